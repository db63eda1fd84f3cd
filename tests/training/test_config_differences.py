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
