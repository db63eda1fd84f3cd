"""Which ``train.objective`` reads which settings of the objective sections (``preference``, ``grpo``).

One table, :data:`OBJECTIVE_SETTINGS`, says it; the trainers read an objective's settings only through
:func:`objective_settings` (a key an objective does not declare is not there to read), so do the GRPO reward
builders (:func:`dsft.eval.rewards.objective_rewards`, for preflight and a sweep's trials), and the notice that
names the settings a run does not apply (:func:`dsft.training.preflight.unused_objective_notice`) asks
:func:`settings_read_by` which objectives would.

Light to import (no torch): it is on the path of ``dsft config show``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from dsft.config import DsftConfig
from dsft.config.schema import GrpoConfig

# The config sections only training objectives read; nothing else in dsft reads them.
OBJECTIVE_SECTIONS = ("preference", "grpo")

# Objective -> its section and the keys of that section it reads (SFT reads none of them).
OBJECTIVE_SETTINGS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "sft": (None, ()),
    "dpo": ("preference", ("beta", "loss_type", "label_smoothing")),
    "kto": ("preference", ("beta", "desirable_weight", "undesirable_weight")),
    "orpo": ("preference", ("beta",)),
    # Sampling, clipping and rewards (TRL), the completion room (data rendering, checks), the run guard.
    "grpo": ("grpo", tuple(GrpoConfig.model_fields)),
}


def objective_settings(cfg: DsftConfig) -> SimpleNamespace:
    """The settings ``cfg``'s ``train.objective`` reads, by key: only those :data:`OBJECTIVE_SETTINGS` declares.

    >>> objective_settings(DsftConfig.model_validate({"train": {"objective": "orpo"}}))
    namespace(beta=0.1)
    """
    section, keys = OBJECTIVE_SETTINGS[cfg.train.objective]
    values = getattr(cfg, section) if section else None
    return SimpleNamespace(**{key: getattr(values, key) for key in keys})


def settings_read_by(section: str, key: str) -> list[str]:
    """The objectives that read ``section.key``, in :data:`OBJECTIVE_SETTINGS` order.

    >>> settings_read_by("preference", "beta")
    ['dpo', 'kto', 'orpo']
    """
    return [objective for objective, (own, keys) in OBJECTIVE_SETTINGS.items() if own == section and key in keys]


def unread_objective_settings(cfg: DsftConfig) -> list[tuple[str, Any]]:
    """``(section.key, value)`` of every objective setting ``cfg`` changes from its default that its
    ``train.objective`` does not read.

    Compared with the defaults, not "was the key written": a saved config.yaml lists every key.

    >>> unread_objective_settings(DsftConfig.model_validate({"train": {"objective": "kto"},
    ...                                                      "preference": {"beta": 0.2, "loss_type": "ipo"}}))
    [('preference.loss_type', 'ipo')]
    """
    section_of, read = OBJECTIVE_SETTINGS[cfg.train.objective]
    unread = []
    for section in OBJECTIVE_SECTIONS:
        values = getattr(cfg, section)
        defaults = type(values)()
        for key in type(values).model_fields:
            if section == section_of and key in read:
                continue
            value = getattr(values, key)
            if value != getattr(defaults, key):
                unread.append((f"{section}.{key}", value))
    return unread
