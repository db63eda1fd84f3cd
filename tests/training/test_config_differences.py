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
