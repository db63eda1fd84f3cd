"""The resume contract: which config keys may change on ``--resume`` and which may not, and the data check.

A resumed run must continue the run it resumes, bit for bit where nothing was changed on purpose. So:

* **Applied on resume** (:data:`APPLIED_ON_RESUME`): the learning rate, the schedule (length, shape,
  warmup), gradient clipping, save/log/eval cadence, early stopping, evaluation settings, how a step is
  computed without changing what it computes (gradient checkpointing, activation offload, loss chunking,
  compile, Liger kernels, attention kernel), trackers, data-loader workers, export and serve defaults.
  Each takes effect from the first resumed step (see :mod:`dsft.training.resume_lr` for the lr, which the
  checkpoint's optimizer and scheduler state would otherwise override).
* **Refused with the diff**: everything else, i.e. whatever changes the data order or what a step is
  (model, data preparation, template and masking, LoRA, method, seed, sequence length, packing,
  micro-batch size, gradient accumulation, optimizer and its hyperparameters, weight decay, label
  smoothing, precision, distributed layout). Start a new run directory for those.
* **Data by content**: paths may move (``data.*`` paths, ``data.mix`` paths included, are not compared;
  ``data.mix`` ratios are); the tokenized training and validation examples are fingerprinted at the start
  and compared on resume, so a data file edited in place is refused, naming the file, while a file moved
  unchanged is accepted.

>>> refused_changes({"train": {"lr": 1e-4, "grad_accum": 1}}, {"train": {"lr": 5e-5, "grad_accum": 2}})
['train.grad_accum: 1 -> 2']
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from dsft.config import DsftConfig
from dsft.config.schema import DEFAULT_LR_CYCLES
from dsft.data.readers import expand_inputs
from dsft.errors import DsftError
from dsft.training.checkpointing import file_hash

# Dotted keys (or key prefixes) whose new value takes effect on --resume.
APPLIED_ON_RESUME: tuple[str, ...] = (
    "train.lr", "train.epochs", "train.max_steps", "train.lr_scheduler", "train.lr_cycles", "train.warmup_ratio",
    "train.max_grad_norm", "train.zero_grad_steps", "train.save_steps", "train.save_total_limit",
    "train.logging_steps", "train.report_to", "train.num_workers", "train.gradient_checkpointing",
    "train.offload_activations", "train.compact_cpu_memory", "train.loss_chunk_size", "train.compile",
    "train.liger", "eval", "export", "serve",
    "model.cache_dir", "model.attn_implementation", "data.num_proc",
)
# Where the data comes from: compared by content (see data_fingerprint), not by path.
DATA_LOCATION_KEYS: tuple[str, ...] = ("data.train", "data.mix", "data.val", "data.test", "data.prepared_dir")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _matches(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (an emptied or filled mapping is its key too).

    >>> config_differences({"train": {"lr": 1e-4, "seed": 1}, "data": {"columns": {}}},
    ...                    {"train": {"lr": 5e-5, "seed": 1}, "data": {"columns": {"q": "prompt"}}})
    ['data.columns', 'data.columns.q', 'train.lr']
    """
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if _recorded(k, a.get(k)) != _recorded(k, b.get(k)))


def _recorded(key: str, value: Any) -> Any:
    """``value`` as it acts: ``train.lr_cycles`` unset runs :data:`DEFAULT_LR_CYCLES`, which every config saved
    before the key could be unset recorded, so a resume of such a run changes nothing there."""
    return DEFAULT_LR_CYCLES if key == "train.lr_cycles" and value is None else value


def refused_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each changed key a resumed run may not change (see the module doc)."""
    refused = _changes(old, new, applied=False)
    # data.mix paths may move like data.train's; its ratios decide which records the steps are made of.
    ratios = [[m.get("ratio") for m in (tree.get("data") or {}).get("mix") or []] for tree in (old, new)]
    if ratios[0] != ratios[1]:
        refused.append(f"data.mix ratios: {ratios[0]} -> {ratios[1]}")
    return sorted(refused)


def applied_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each changed key a resumed run applies: what a resume says it continues with.

    >>> applied_changes({"train": {"max_steps": 40, "seed": 1}}, {"train": {"max_steps": 12, "seed": 2}})
    ['train.max_steps: 40 -> 12']
    """
    return _changes(old, new, applied=True)


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every key whose value differs between two resolved configs.

    >>> changed_settings({"train": {"lr": 1e-4, "seed": 1}}, {"train": {"lr": 5e-5, "seed": 1}})
    ['train.lr: 0.0001 -> 5e-05']
    """
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}".replace("'", "") for k in config_differences(old, new)]


def _changes(old: dict[str, Any], new: dict[str, Any], applied: bool) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}".replace("'", "") for k in config_differences(old, new)
            if _matches(k, APPLIED_ON_RESUME + DATA_LOCATION_KEYS) == applied]


def data_fingerprint(splits: dict[str, Any]) -> str:
    """A hash of the rendered examples of every split, in order: what the steps are made of.

    Token lists (SFT's ``input_ids``/``labels``) are hashed as int64 arrays; any other value (a
    preference pair, a GRPO prompt) as its canonical JSON.
    """
    digest = xxhash.xxh3_128()
    for name in sorted(splits):
        digest.update(name.encode())
        for example in getattr(splits[name], "examples", splits[name]):
            for key in sorted(example) if isinstance(example, dict) else [None]:
                value = example[key] if key is not None else example
                digest.update(str(key).encode())
                if isinstance(value, list) and all(isinstance(v, int) for v in value):
                    digest.update(np.asarray(value, dtype=np.int64).tobytes())
                else:
                    digest.update(json.dumps(value, sort_keys=True, default=str).encode())
            digest.update(b"|")
    return digest.hexdigest()


def data_files(cfg: DsftConfig) -> dict[str, str]:
    """Each input data file (or prepared split) and the hash of its bytes, to name what changed."""
    if cfg.data.prepared_dir:
        paths = sorted(p for p in Path(cfg.data.prepared_dir).glob("*.jsonl") if p.is_file())
    else:
        mixed = [source.path for source in cfg.data.mix]
        paths = [p for p in expand_inputs([*cfg.data.train, *mixed, *cfg.data.val, *cfg.data.test]) if p.is_file()]
    return {str(p): file_hash(p) for p in paths}


def check_same_data(previous: dict[str, Any], fingerprint: str, files: dict[str, str]) -> None:
    """Refuse a resume whose training examples differ from the run's (naming the input files that changed)."""
    recorded = previous.get("data_fingerprint")
    if recorded is None or recorded == fingerprint:
        return
    before = previous.get("data_files") or {}
    changed = [f"{path}: content changed since the run started" for path, digest in files.items()
               if path in before and before[path] != digest]
    changed += [f"{path}: not an input when the run started" for path in files
                if path not in before and files[path] not in before.values()]
    changed += [f"{path}: an input when the run started, missing now" for path, digest in before.items()
                if path not in files and digest not in files.values()]
    raise DsftError(
        "--resume: the training data differs from the data this run started with (a resumed run must see "
        "the same examples in the same order); restore the data or start a new --out directory",
        changed or ["the tokenized examples differ (a cleaning, template or tokenizer change)"],
        job_wide=True,  # every process compares the same data with the same run.json
    )


def planned_schedule(trainer: Any) -> tuple[int, int]:
    """(optimizer steps an epoch, optimizer steps in all: ``train.max_steps``, or the epochs over the data), as
    the Trainer counts them."""
    values = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())
    return int(values[1]), int(values[-1])
