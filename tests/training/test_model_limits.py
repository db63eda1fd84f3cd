"""Sizes the model's config bounds are refused by the preflight, before anything loads: lora.r above the widest
matrix side LoRA can use, train.max_seq_len beyond the positions the model places, a LoRA scale that diverges.
``lora.r=99999999999`` died in torch allocating 25 TB after the data was prepared and the model loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.models.tiny import TINY_PRESETS
from dsft.plan.preflight import preflight_problems
from dsft.plan.model_source import _config_from_dict
from dsft.plan.shapes import model_shapes
from dsft.training.environment import Environment
from dsft.training.model_limits import context_length, largest_useful_rank, model_size_problems

ENV = Environment(world_size=1)


def _problems(*sets: str) -> list[str]:
    return model_size_problems(load_config(None, list(sets)))


@pytest.mark.parametrize("preset", list(TINY_PRESETS))
def test_the_largest_useful_rank_is_the_widest_smaller_side_of_the_adapted_matrices(preset: str) -> None:
    """Checked against the planner's shapes of the real module tree (MLA, MoE experts, dense MLPs)."""
    values = TINY_PRESETS[preset].config()
    shapes = model_shapes(_config_from_dict(values, preset)).lora_linear_shapes
    assert largest_useful_rank(values) == max(min(fan_in, fan_out) for fan_in, fan_out, _ in shapes)


def test_a_rank_above_the_hidden_size_is_refused_naming_the_largest_useful_one() -> None:
    assert _problems("lora.r=64") == []
    problems = _problems("lora.r=99999999999")
    assert len(problems) == 1 and problems[0].startswith("lora.r=99999999999: above the hidden size of "
                                                         "tiny-deepseek-v3 (64"), problems
    assert problems[0].endswith("set lora.r to at most 64"), problems
    assert _problems("lora.r=65") and _problems(f"lora.r={2**63}")


def test_a_full_fine_tune_has_no_adapter_rank_to_check() -> None:
    assert _problems("train.method=full", "lora.r=99999999999", "lora.alpha=1") == []


def test_a_row_longer_than_the_model_places_is_refused() -> None:
    assert _problems("model.name_or_path=tiny-deepseek-llm", "train.max_seq_len=4096") == []
    problems = _problems("model.name_or_path=tiny-deepseek-llm", "train.max_seq_len=99999999999")
    assert problems == [problems[0]] and problems[0].startswith(
        "train.max_seq_len=99999999999: above the 4096 positions tiny-deepseek-llm places"), problems
    assert problems[0].endswith("set train.max_seq_len to at most 4096")
    # The preset that ships yarn rope scaling: 163840 positions, not its original 4096.
    assert _problems("train.max_seq_len=163840") == [] and _problems("train.max_seq_len=163841")


def test_a_generation_longer_than_the_model_places_is_refused() -> None:
    """A model that never emits EOS generated eval.max_new_tokens=2**63 tokens for ever during training."""
    assert _problems("model.name_or_path=tiny-deepseek-llm", "eval.max_new_tokens=4096") == []
    problems = _problems("model.name_or_path=tiny-deepseek-llm", f"eval.max_new_tokens={2**63}")
    assert problems == [f"eval.max_new_tokens={2**63}: above the 4096 positions tiny-deepseek-llm places "
                        "(max_position_embeddings and rope scaling in its config), which the prompt and the answer "
                        "share: set it to at most 4096"], problems


def test_rope_scaling_extends_the_context_and_dynamic_ntk_leaves_it_open() -> None:
    yarn = {"max_position_embeddings": 32768,
            "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
    assert context_length(yarn) == 131072
    assert context_length({"max_position_embeddings": 2048, "rope_scaling": {"type": "dynamic", "factor": 2.0}}) is None
    assert context_length({"text_config": {"max_position_embeddings": 8192}}) == 8192
    assert context_length({}) is None and largest_useful_rank({}) is None


def test_a_local_model_directory_is_read_from_its_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32,
                                                      "max_position_embeddings": 512}))
    problems = _problems(f"model.name_or_path={tmp_path}", "lora.r=33", "train.max_seq_len=513")
    assert [p.split(":")[0] for p in problems] == ["lora.r=33", "train.max_seq_len=513"], problems


def test_a_model_whose_config_is_unknown_here_is_not_checked() -> None:
    assert _problems("model.name_or_path=someone/unknown-model", "lora.r=4096", "train.max_seq_len=1000000") == []


def test_a_lora_scale_that_diverges_is_refused() -> None:
    assert _problems("lora.r=8", "lora.alpha=8000") == []
    problems = _problems("lora.r=8", "lora.alpha=99999999999")
    assert len(problems) == 1 and problems[0].startswith("lora.alpha=99999999999: scales each adapter update by "
                                                         "alpha / r = 1.25e+10"), problems
    assert problems[0].endswith("set lora.alpha to at most 8000 for lora.r=8")
    assert _problems("lora.r=16", "lora.alpha=4000", "lora.use_rslora=true") == []  # 4000 / sqrt(16) = 1000


def test_the_preflight_reports_them_with_every_other_problem() -> None:
    cfg = load_config(None, ["lora.r=99999999999", "eval.metric=nope"])
    problems = preflight_problems(cfg, ENV)
    assert any(p.startswith("lora.r=99999999999") for p in problems)
    assert any(p.startswith("eval.metric") for p in problems)
