"""What is being exported, evaluated or served: a training run (its directory, its ``final/`` or one of its
checkpoints) or a plain model directory.

A run directory says everything in its ``run.json`` (template name, base model, method), so export
never guesses the chat template of a trained model; a LoRA checkpoint (``RUN/checkpoints/checkpoint-N``,
adapter only) is found in its run by :meth:`RunDir.find` and gets the run's base model and template. A plain
model directory (a merged export, a downloaded checkpoint, a tiny preset) has its template detected from its
tokenizer by :func:`dsft.templates.detect_template`.

>>> src = resolve_source("runs/r1-lora")  # doctest: +SKIP
>>> (src.method, src.template, src.adapter_dir.name)  # doctest: +SKIP
('lora', 'deepseek-r1', 'final')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.models.loading import align_special_tokens, load_model, load_tokenizer
from dsft.models.lora import load_lora_adapter
from dsft.models.resolve import check_model_files, check_model_name, resolve_model
from dsft.templates import detect_template
from dsft.training.checkpointing import list_checkpoints
from dsft.training.rundir import RunDir


@dataclass(frozen=True)
class ExportSource:
    """A resolved export input.

    ``model_dir`` holds full weights (the base model for adapter runs, the trained weights otherwise);
    ``adapter_dir`` holds the PEFT adapter for LoRA/QLoRA runs; ``tokenizer_dir`` the tokenizer that
    training used.
    """

    method: str
    template: str
    model_dir: Path
    tokenizer_dir: Path
    adapter_dir: Path | None = None
    run_dir: Path | None = None


def _source_from_run(run: RunDir, base_model: str | Path | None = None) -> ExportSource:
    """A run's weights (``final/`` or the checkpoint it was found from), as :meth:`RunDir.to_load` finds them."""
    found = run.to_load(base_model)
    return ExportSource(run.method, run.template, found.model_dir, found.tokenizer_dir, adapter_dir=found.adapter_dir,
                        run_dir=run.path)


def _tokenizer_dir(directory: Path) -> Path:
    if (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").is_file():
        return directory
    raise DsftError(f"no tokenizer files in {directory}")


def _check_model_dir(model_dir: Path) -> None:
    if (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
        raise DsftError(_bare_adapter_problem(model_dir))
    if not (model_dir / "config.json").is_file():
        raise DsftError(_not_a_model_dir(model_dir))
    check_model_files(model_dir)


def _not_a_model_dir(directory: Path) -> str:
    """Why ``directory`` loads nothing, naming what to pass where it is a run's checkpoints folder (where tab
    completion stops) or a folder of runs or models."""
    checkpoints = list_checkpoints(directory)
    if checkpoints and RunDir.is_run(directory.parent):
        return (f"{directory}: the checkpoints folder of the run {directory.parent}; name the run, or one checkpoint, "
                f"e.g. {checkpoints[-1]}")
    inside = sorted(p for p in directory.iterdir() if RunDir.is_run(p) or (p / "config.json").is_file())
    if inside:
        return f"{directory}: a folder of runs or models; name one, e.g. {inside[0]}"
    if (directory / "config.yaml").is_file() and (directory / "data").is_dir():
        # what `dsft train` leaves where the data left nothing to train on (its report beside the prepared data)
        return (f"{directory}: a run that stopped before it trained (its config.yaml and data/, no run.json or "
                f"weights; why: {directory / 'data' / 'data_report.json'}); fix that and rerun dsft train with --out "
                f"{directory}")
    return f"{directory}: neither a run directory (run.json) nor a model directory (config.json)"


def _bare_adapter_problem(adapter_dir: Path) -> str:
    """Why an adapter outside any run directory is refused, naming the base it records and the fix.

    Its run's ``run.json`` owns the base model (found again after a move) and the chat template; the adapter's own
    ``base_model_name_or_path`` is the absolute path at training time and says nothing of the template, so it is
    shown, never loaded (a template guessed for a trained model is what dsft never does).
    """
    try:
        recorded = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
        base = str(recorded.get("base_model_name_or_path") or "") if isinstance(recorded, dict) else ""
    except (OSError, ValueError):
        base = ""
    gone = "" if not base or Path(base).is_dir() or not Path(base).is_absolute() else ", which no longer exists"
    looked = (f"adapter_config.json records the base {base}{gone}" if base
              else "adapter_config.json records no base model")
    here = adapter_dir.resolve()
    return (f"{adapter_dir}: a LoRA adapter outside its run directory: no run.json in {here.parent} or "
            f"{here.parent.parent} names its base model and chat template ({looked}); point at it inside "
            "its run (RUN, RUN/final or RUN/checkpoints/checkpoint-N), or copy it back there; a merged model "
            "(`dsft export RUN --format hf`) needs no run")


def _source_from_model(model_dir: Path) -> ExportSource:
    _check_model_dir(model_dir)
    template = detect_template(str(model_dir))
    return ExportSource("full", template, model_dir, _tokenizer_dir(model_dir))


def resolve_source(run_or_model: str | Path, base_model: str | Path | None = None) -> ExportSource:
    """Resolve a run directory, a model directory, a tiny preset name or a hub id into an :class:`ExportSource`.

    Runs are recognised by ``run.json`` (in the directory, or above its ``final/`` or checkpoint: see
    :meth:`RunDir.find`); their template comes from it, never from guessing. ``base_model`` overrides where a LoRA
    run's base model is found (``--base-model``).
    """
    path = Path(run_or_model)
    run = RunDir.find(path)
    if run is not None:
        return _source_from_run(run, base_model)
    if path.is_dir():
        return _source_from_model(path)
    # Not a directory: a tiny preset or a hub id; resolve_model names what it could not resolve.
    return _source_from_model(Path(resolve_model(str(run_or_model))))


def check_source(run_or_model: str | Path, base_model: str | Path | None = None) -> None:
    """Raise the error :func:`resolve_source` would raise for an input that names nothing (a missing path, a
    file, an unknown name, a directory holding no model) or a ``base_model`` that does, without loading,
    converting or downloading anything: commands call it before torch loads. A LoRA run's (or checkpoint's) base
    model must be found; the run's weights are checked when they are opened."""
    path = Path(run_or_model)
    run = RunDir.find(path) if str(run_or_model).strip() else None
    if base_model is not None:
        if run is None:
            raise DsftError(f"--base-model applies to a run directory (where a moved run finds its base model); "
                            f"{run_or_model} is not one (no run.json): drop --base-model")
        try:
            check_model_name(base_model)
        except DsftError as exc:
            raise DsftError(f"--base-model: {exc}") from exc
    if run is not None:
        # An adapter's base model is looked for now; anything else amiss (run.json's keys, no final/) is said when
        # the run is opened, as before.
        if base_model is None and run.weights_path.is_dir() and run.has_adapter:
            run.check_base_model()
        return
    if path.is_dir() and str(run_or_model).strip():  # "" would read as the current directory
        _check_model_dir(path)
    else:
        check_model_name(run_or_model)


def check_out_is_not_the_source(run_or_model: str | Path, out: Path) -> None:
    """Refuse an ``--out`` that is the directory the model is read from (a run's ``final/``, a model directory):
    the export's files (``model.safetensors``, ``config.json``, the adapter, the tokenizer) would replace the
    ones being exported, even with ``--overwrite``. Refuse the run directory itself too (its run.json,
    config.yaml and checkpoints would sit beside a model's config.json and weights)."""
    path = Path(run_or_model)
    run = RunDir.find(path)
    if run is not None and out.resolve() == run.path.resolve():
        raise DsftError(f"--out {out}: the run directory itself; its files (run.json, config.yaml, checkpoints) are "
                        f"read from there, and a model written beside them makes it a model directory too; export "
                        f"into a directory of its own, e.g. --out {run.path / 'export'}")
    read = run.weights_path if run is not None else path if path.is_dir() else None
    if read is not None and out.resolve() == read.resolve():
        raise DsftError(f"--out {out}: the model is read from there; an export into it would overwrite the files it "
                        "exports; choose another directory")


def load_trained_model(source: ExportSource) -> Any:
    """The model as training left it, in float32 on CPU: the base with the adapter applied (not merged),
    or the full weights.

    float32 keeps the verification reference free of rounding the export itself did not introduce.
    The adapter loads exactly as trained (no peft v4 -> v5 target rewriting), and the config's special
    ids are aligned with the tokenizer (R1-Distill-Qwen's config.json names the wrong BOS).
    """
    model = load_model(source.model_dir, dtype="float32", device="cpu")
    align_special_tokens(model, load_tokenizer(source.tokenizer_dir))
    if source.adapter_dir is not None:
        model = load_lora_adapter(model, str(source.adapter_dir))
    return model.eval()


# config.json keys that count routed experts (DeepSeek V2/V3, Mixtral, Qwen MoE).
_EXPERT_COUNT_KEYS = ("n_routed_experts", "num_local_experts", "num_experts")


def routes_to_experts(model_dir: Path) -> bool:
    """Whether the checkpoint is a mixture of experts (its config.json counts routed experts)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return any(config.get(key) for key in _EXPERT_COUNT_KEYS)


def stored_dtype(model_dir: Path) -> str:
    """The dtype the checkpoint was saved in (config.json ``dtype``/``torch_dtype``), ``float32`` if unstated."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    value = config.get("dtype") or config.get("torch_dtype") or "float32"
    return str(value).replace("torch.", "")
