"""The run directory: the one module that writes and reads ``run.json``, ``config.yaml``, checkpoints and
``final/``.

Training writes a run directory; eval, export, serve (and anything else that looks at a run) open it
with :class:`RunDir` and ask it, never the files:

>>> run = RunDir("runs/r1-lora")                       # doctest: +SKIP
>>> run.status, run.template, run.method               # doctest: +SKIP
('finished', 'deepseek-r1', 'lora')
>>> run.final, run.checkpoints()[-1].name              # doctest: +SKIP
(PosixPath('runs/r1-lora/final'), 'checkpoint-40')
>>> run.base_model()                                   # doctest: +SKIP
PosixPath('/home/me/.cache/dsft/tiny/tiny-deepseek-v3')

A command given a model argument asks :meth:`RunDir.find` whether it names a run: the run directory itself,
its ``final/``, or one of its checkpoints (``RUN/checkpoints/checkpoint-N``). The run then answers for those
weights: the base model and chat template of a LoRA checkpoint are the run's (run.json), as for ``final/``:

>>> RunDir.find("runs/r1-lora/checkpoints/checkpoint-20").weights   # doctest: +SKIP
PosixPath('runs/r1-lora/checkpoints/checkpoint-20')

A run directory can be moved or copied to another machine. Everything inside it is found relative to
the directory itself; the base model of a LoRA run is found by :meth:`RunDir.base_model` (see there).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dsft import __version__
from dsft.config import DsftConfig, dump_config, load_config
from dsft.disk import is_replacement_in_flight, replaced_atomically
from dsft.errors import DsftError
from dsft.models.resolve import check_model_name, resolve_model
from dsft.training.base_model import BaseModelRecord, base_model_record
from dsft.training.checkpointing import CHECKPOINT_RE, list_checkpoints
from dsft.training.liveness import another_live_process, process_alive
from dsft.training.resume import DATA_LOCATION_KEYS, applied_changes, config_differences, refused_changes

RUN_INFO_FILE = "run.json"
CONFIG_FILE = "config.yaml"
FINAL_DIR = "final"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
ADAPTER_METHODS = ("lora", "qlora")
FULL_METHODS = ("full",)
# ``status`` of a directory whose run has not written run.json yet (or stopped during setup).
NOT_STARTED = "not started"
# ``status`` of a run recorded as running whose training process has ended without recording how
# (killed, out of memory, the machine rebooted).
INTERRUPTED = "interrupted"

# Changing any of these makes it a different run; other keys (steps, lr, logging, eval cadence)
# may change on --resume, e.g. to extend a run or to lower the lr after a NaN stop.
IDENTITY_KEYS = ("model", "data", "template", "lora", "train.objective", "train.method", "train.max_seq_len",
                 "train.packing", "train.seed")


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


@dataclass(frozen=True)
class WeightsToLoad:
    """The directories a run's weights load from (:meth:`RunDir.to_load`): full weights or the base model in
    ``model_dir``, the tokenizer in ``tokenizer_dir``, and a LoRA/QLoRA adapter in ``adapter_dir`` (None: none)."""

    model_dir: Path
    tokenizer_dir: Path
    adapter_dir: Path | None = None


class RunDir:
    """A dsft run directory (see the module docstring). Cheap to create: nothing is read until asked."""

    def __init__(self, path: str | Path, weights: str | Path | None = None) -> None:
        self.path = Path(path)
        # The weights a command was pointed at (final/ or a checkpoint, see find); None: final/.
        self._weights = Path(weights) if weights is not None else None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- what it is -------------------------------------------------------------------------------
    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Whether ``path`` is a run directory that training has started (it holds ``run.json``)."""
        return (Path(path) / RUN_INFO_FILE).is_file()

    @classmethod
    def find(cls, path: str | Path) -> "RunDir | None":
        """The run that ``path`` names, with the weights it names: the run directory itself (its ``final/``),
        its ``final/``, or one of its ``checkpoints/checkpoint-N``. None for anything else: a model directory,
        a name, or an adapter copied out of its run (which has nothing saying its base model and template)."""
        path = Path(path)
        if cls.is_run(path):
            return cls(path)
        if not path.is_dir():
            return None
        here = path.resolve()
        if cls.is_run(here.parent) and cls(here.parent).final_path.resolve() == here:
            return cls(here.parent, weights=path)
        run = here.parent.parent
        if CHECKPOINT_RE.match(here.name) and cls.is_run(run) and cls(run).checkpoint_root.resolve() == here.parent:
            return cls(run, weights=path)
        return None

    @property
    def info_path(self) -> Path:
        return self.path / RUN_INFO_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint_root(self) -> Path:
        """Where the Trainer writes ``checkpoint-N`` (TrainingArguments.output_dir)."""
        return self.path / CHECKPOINT_DIR

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    # -- reading ----------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """``run.json``, read afresh on every access (a live run rewrites it)."""
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DsftError(f"{self.path}: not a dsft run directory (no {RUN_INFO_FILE})") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise DsftError(f"{self.info_path}: unreadable ({exc})") from exc
        if not isinstance(info, dict):
            raise DsftError(f"{self.info_path}: not a JSON object")
        return info

    def require(self, *keys: str) -> dict[str, Any]:
        """``info``, or an error naming the ``keys`` it lacks."""
        info = self.info
        missing = [key for key in keys if not info.get(key)]
        if missing:
            raise DsftError(f"{self.info_path}: missing {', '.join(missing)}; was the run written by dsft?")
        return info

    @property
    def config(self) -> DsftConfig:
        """The resolved config the run was started with (``config.yaml``)."""
        return load_config(self.config_path)

    @property
    def status(self) -> str:
        """``running`` | ``finished`` | ``stalled`` | ``stopped`` | ``failed`` as recorded, ``not started``,
        or ``interrupted``: recorded as running, but its training process on this host has ended.

        A run recorded as running on another host stays ``running`` (its process cannot be checked).
        """
        if not self.info_path.is_file():
            return NOT_STARTED
        info = self.info
        status = str(info.get("status") or "unknown")
        if status == "running" and process_alive(info.get("process")) is False:
            return INTERRUPTED
        return status

    @property
    def template(self) -> str:
        """The chat-template family the run trained with."""
        return str(self.require("template")["template"])

    @property
    def method(self) -> str:
        """``lora`` | ``qlora`` | ``full``."""
        method = str(self.require("method")["method"])
        if method not in ADAPTER_METHODS + FULL_METHODS:
            raise DsftError(f"{self.info_path}: unknown method {method!r}; expected one of "
                            f"{', '.join(ADAPTER_METHODS + FULL_METHODS)}")
        return method

    @property
    def thinking(self) -> bool | None:
        """``template.thinking`` of the run (None: the family's default)."""
        return self.info.get("thinking")

    @property
    def started(self) -> bool:
        """Whether a run trained here (run.json, a checkpoint or final/). One that stopped during setup (a data
        error, a model that does not load) never wrote run.json: nothing of it is worth keeping but its config,
        which :meth:`prepare` backs up; the same or a corrected command may take the directory over."""
        return self.info_path.is_file() or bool(self.checkpoints()) or self.final_path.exists()

    def checkpoints(self) -> list[Path]:
        """Complete ``checkpoint-N`` directories, oldest first."""
        return list_checkpoints(self.checkpoint_root)

    @property
    def final_path(self) -> Path:
        """Where the finished run's weights are (or will be): ``final/`` unless run.json names another."""
        recorded = self.info.get("final") if self.info_path.is_file() else None
        return self.path / str(recorded or FINAL_DIR)

    @property
    def final(self) -> Path:
        """The finished run's weights (adapter or full); an error naming the status if there are none."""
        final = self.final_path
        if not final.is_dir():
            finished = self.status == "finished"
            why = "the run finished, but it was removed" if finished else "the run has not finished"
            ways = [] if finished else [f"continue it with `dsft train {self.config_path} --out {self.path} "
                                        "--resume auto`"]
            if self.checkpoints():  # eval, export, serve and chat take a checkpoint of the run as they take the run
                ways.append(f"use one of its checkpoints, e.g. {self.checkpoints()[-1]}")
            raise DsftError(f"{self.path}: no {final.name}/ directory; {why} (status: {self.status})"
                            + (f"; {', or '.join(ways)}" if ways else "; train it again"))
        return final

    @property
    def weights_path(self) -> Path:
        """Where the weights a command was pointed at are (see :meth:`find`): a checkpoint, else ``final/``."""
        return self._weights if self._weights is not None else self.final_path

    @property
    def weights(self) -> Path:
        """:attr:`weights_path`, which must exist: :attr:`final`'s error names the run's status if it is final/."""
        if self._weights is None or self._weights.resolve() == self.final_path.resolve():
            return self.final
        if not self._weights.is_dir():
            raise DsftError(f"{self._weights}: no such checkpoint of run {self.path}")
        return self._weights

    @property
    def is_checkpoint(self) -> bool:
        """Whether the weights are one of the run's checkpoints rather than ``final/``."""
        return self._weights is not None and self._weights.resolve() != self.final_path.resolve()

    @property
    def has_adapter(self) -> bool:
        """Whether the weights (``final/`` or the checkpoint) are a PEFT adapter (LoRA/QLoRA), not full weights."""
        return (self.weights / "adapter_config.json").is_file()

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (one per logged optimizer step), oldest first."""
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def base_model(self, override: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
        """The base model's directory, on this machine, for a run directory that may have moved: ``override`` (a
        path, tiny preset or hub id: the ``--base-model`` flag), else what run.json records, found again as
        :class:`~dsft.training.base_model.BaseModelRecord` says."""
        if override is not None:
            return resolve_model(override, cache_dir=cache_dir)
        return BaseModelRecord.of(self.path, self.info).find(self._whose_base(), cache_dir)

    def check_base_model(self, override: str | Path | None = None) -> None:
        """Raise the error :meth:`base_model` would raise, without writing a preset or downloading anything (commands
        call it before torch loads). A hub id is taken as found: only the download can tell."""
        if override is not None:
            check_model_name(override)
            return
        BaseModelRecord.of(self.path, self.info).check(self._whose_base())

    def _whose_base(self) -> str:
        """The start of the error when the base model is not found: the checkpoint pointed at, or the run."""
        return (f"{self._weights}: a checkpoint of run {self.path}, whose base model" if self.is_checkpoint
                else f"{self.path}: the run's base model")

    def to_load(self, base_model: str | Path | None = None, cache_dir: str | Path | None = None) -> WeightsToLoad:
        """What the weights load as, for eval, export, serve and chat alike: a LoRA/QLoRA run's adapter on its base
        model (``base_model``: the ``--base-model`` override), or a full run's weights, complete without the base.

        The tokenizer is the weights' own (a run saves the one it trained with, chat template included, into final/
        and every checkpoint), else the base's."""
        method, weights = self.method, self.weights
        if method in FULL_METHODS:  # the base is looked for only for a tokenizer the weights lack
            base = None if _has_tokenizer(weights) else self.base_model(base_model, cache_dir)
            return WeightsToLoad(weights, weights if base is None else self._base_tokenizer(base))
        if not self.has_adapter:
            raise DsftError(f"{weights}: run.json says method {method!r} but there is no adapter_config.json")
        base = self.base_model(base_model, cache_dir)
        return WeightsToLoad(base, weights if _has_tokenizer(weights) else self._base_tokenizer(base), weights)

    def base_to_load(self, base_model: str | Path | None = None, cache_dir: str | Path | None = None) -> WeightsToLoad:
        """The run's base model as it loads on its own, beside the trained weights (the dashboard's base side by side
        of a full run), as ``dsft compare`` evaluates it: the base directory with its own tokenizer, not the run's (a
        run may have changed it: added tokens, whose ids the base's embeddings do not have, another chat template);
        the tokenizer of the weights pointed at (final/ or a checkpoint) only where the base directory has none."""
        base = self.base_model(base_model, cache_dir)
        return WeightsToLoad(base, base if _has_tokenizer(base) else self.to_load(base_model, cache_dir).tokenizer_dir)

    def _base_tokenizer(self, base: Path) -> Path:
        if not _has_tokenizer(base):
            raise DsftError(f"no tokenizer files in {self.weights} or {base}")
        return base

    # -- writing ----------------------------------------------------------------------------------
    def prepare(self, cfg: DsftConfig, resuming: bool) -> None:
        """Create or re-open the directory for ``cfg``; refuse one that holds another run or unrelated files.

        A changed non-identity key (steps, lr, ...) is allowed and the old config is kept as
        ``config.before-STAMP.yaml``. Resuming a run that has checkpoints (or a final/) refuses every change
        the resume contract does not apply, with the diff (see :mod:`dsft.training.resume`).
        """
        run_dir, saved = self.path, self.config_path
        diffs, old_text = self._compared(cfg, resuming)
        # Every process of a launched job prepares the directory at once, so each writes through a rename (none
        # reads another's half-written config.yaml), and the kept config is the text this process compared: read
        # again, it could be the new one another process has just written.
        if diffs and old_text is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            with replaced_atomically(run_dir / f"config.before-{stamp}.yaml") as handle:
                handle.write(old_text)
        run_dir.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(saved) as handle:
            handle.write(dump_config(cfg))

    def applied_changes(self, cfg: DsftConfig) -> list[str]:
        """``key: old -> new`` for each setting of ``cfg`` a resume applies that differs from the saved config."""
        if not self.config_path.is_file():
            return []
        old = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        return applied_changes(old, cfg.model_dump(mode="json"))

    def check(self, cfg: DsftConfig, resuming: bool) -> list[str]:
        """The refusals of :meth:`prepare`, writing nothing (``dsft train`` runs them before torch loads);
        returns the keys in which ``cfg`` differs from the directory's saved config."""
        return self._compared(cfg, resuming)[0]

    def _compared(self, cfg: DsftConfig, resuming: bool) -> tuple[list[str], str | None]:
        """:meth:`check`'s differences, and the saved config's text they were found in (None: none saved)."""
        run_dir, saved = self.path, self.config_path
        if run_dir.exists() and not run_dir.is_dir():
            raise DsftError(f"--out {run_dir}: exists and is not a directory", job_wide=True)
        # Another process of the job may be writing config.yaml this moment: its temporary file is not the user's.
        if (run_dir.is_dir() and any(not is_replacement_in_flight(p) for p in run_dir.iterdir())
                and not saved.is_file()):
            raise DsftError(f"--out {run_dir}: exists, is not empty and holds no dsft run (no {CONFIG_FILE}); "
                            "choose a new directory", job_wide=True)
        recorded = self.recorded_info()
        if recorded.get("status") == "running" and another_live_process(recorded.get("process")):
            raise DsftError(f"--out {run_dir}: is being trained right now by process {recorded['process']['pid']}; "
                            "stop it first (a second trainer would overwrite its checkpoints), or choose a new "
                            "--out directory")
        new = cfg.model_dump(mode="json")
        if saved.is_file():
            old_text = saved.read_text(encoding="utf-8")
            old = yaml.safe_load(old_text) or {}
            diffs = config_differences(old, new)
            # Where the data lies may change (moved files); its content is compared on resume (resume.py).
            identity = [d for d in diffs if any(d == k or d.startswith(k + ".") for k in IDENTITY_KEYS)
                        and not any(d == k or d.startswith(k + ".") for k in DATA_LOCATION_KEYS)]
            has_checkpoints = bool(self.checkpoints())
            started = self.started
            refused = refused_changes(old, new)
            if refused and resuming and (has_checkpoints or self.final_path.exists()):
                raise DsftError(
                    f"--resume: {run_dir} cannot continue with these changes (a resumed run must see the same "
                    "data in the same steps; see the resume contract in docs/training.md); undo them or start a "
                    "new --out directory", refused, job_wide=True,
                )
            if identity and started:
                raise DsftError(
                    f"--out {run_dir}: already holds a different run (config differs in: {', '.join(identity)}); "
                    "choose a new --out directory", job_wide=True,
                )
            if has_checkpoints and not resuming:
                raise DsftError(f"--out {run_dir}: already holds checkpoints of this run; pass --resume auto to "
                                "continue it, or choose a new --out directory", job_wide=True)
            return diffs, old_text
        return [], None

    def recorded_info(self) -> dict[str, Any]:
        """``run.json`` as recorded, or an empty dict when there is none or it is unreadable."""
        try:
            return self.info
        except DsftError:
            return {}

    def recorded_config(self) -> dict[str, Any]:
        """``config.yaml`` as recorded (the resolved config, unvalidated), or an empty dict when there is none or it
        is unreadable."""
        try:
            recorded = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return {}
        return recorded if isinstance(recorded, dict) else {}

    def write_info(self, **info: Any) -> dict[str, Any]:
        """Write ``run.json``: what eval, export and serve need to reuse the run without guessing."""
        record = {"dsft_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        with replaced_atomically(self.info_path) as handle:  # every process of a launched job writes it
            handle.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        return record

    def base_model_record(self, cfg: DsftConfig, model_dir: Path) -> dict[str, Any]:
        """The run.json keys :meth:`base_model` resolves a moved run's base model from."""
        return base_model_record(self.path, cfg, model_dir)


def prepare_run_dir(run_dir: Path, cfg: DsftConfig, resuming: bool) -> None:
    """:meth:`RunDir.prepare` (kept for callers that hold a path)."""
    RunDir(run_dir).prepare(cfg, resuming)

