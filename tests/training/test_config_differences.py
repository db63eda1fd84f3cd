"""One comparison of two resolved configs: --out's check (another run in the directory?) and --resume's (a change
the resume contract refuses?) name the same changed keys."""

from __future__ import annotations

from dsft.training.resume import refused_changes
from dsft.training.rundir import config_differences


def test_an_emptied_mapping_is_a_change_to_out_as_to_resume() -> None:
    """The run directory flattened configs its own way, in which an empty mapping vanished: a config with
    data.max_tokens_per_role {} and one without the key were the same run to --out, while --resume named the change."""
    old, new = {"data": {"max_tokens_per_role": {}, "seed": 1}}, {"data": {"seed": 1}}
    assert config_differences(old, new) == ["data.max_tokens_per_role"]
    assert [change.split(":")[0] for change in refused_changes(old, new)] == config_differences(old, new)
    assert config_differences(new, new) == []


def test_applied_changes_are_the_ones_a_resume_is_allowed() -> None:
    from dsft.training.resume import applied_changes

    old = {"train": {"lr": 1e-4, "max_steps": 40, "grad_accum": 1}, "eval": {"steps": 0}}
    new = {"train": {"lr": 5e-5, "max_steps": 12, "grad_accum": 2}, "eval": {"steps": 6}}
    assert applied_changes(old, new) == ["eval.steps: 0 -> 6", "train.lr: 0.0001 -> 5e-05", "train.max_steps: 40 -> 12"]
    assert refused_changes(old, new) == ["train.grad_accum: 1 -> 2"]


def test_the_lr_cycles_every_earlier_config_recorded_is_no_change_from_unset() -> None:
    """Configs saved before train.lr_cycles could be unset recorded 5 for every scheduler; unset now runs the same 5
    cycles (DEFAULT_LR_CYCLES). Resuming such a run said it continued with 'train.lr_cycles: 5 -> None' applied."""
    from dsft.config.schema import DEFAULT_LR_CYCLES
    from dsft.training.resume import applied_changes

    old = {"train": {"lr_cycles": DEFAULT_LR_CYCLES, "lr_scheduler": "cosine"}}
    new = {"train": {"lr_cycles": None, "lr_scheduler": "cosine"}}
    assert config_differences(old, new) == [] and applied_changes(old, new) == []
    assert applied_changes(old, {"train": {"lr_cycles": 3, "lr_scheduler": "cosine"}}) == ["train.lr_cycles: 5 -> 3"]
