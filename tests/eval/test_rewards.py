"""GRPO rewards: scored after </think>, aware of the prompt's open think block, loud about bad options."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dsft.errors import ConfigError
from dsft.eval import rewards
from dsft.eval.rewards import build_rewards

R1_PROMPT = "<｜begin▁of▁sentence｜><｜User｜>6*7?<｜Assistant｜><think>\n"
V3_PROMPT = "<｜begin▁of▁sentence｜><｜User｜>6*7?<｜Assistant｜>"


@dataclass
class RewardSpec:
    """The shape of a ``grpo.rewards`` entry."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


TRL_EXTRAS = {"trainer_state": None, "log_extra": None, "log_metric": None}


def test_accuracy_scores_the_answer_after_think_not_the_reasoning() -> None:
    completions = [
        "6*7 is 42? no wait\n</think>\n\n41",   # 42 only in the reasoning: wrong
        "6*7\n</think>\n\nThe answer is 42.",   # right
        "42 42 42 still thinking",              # never closed the block: no answer
        "</think>\n\n",                         # closed, but said nothing
    ]
    scores = rewards.accuracy([R1_PROMPT] * 4, completions, answer=["42"] * 4, **TRL_EXTRAS)
    assert scores == [0.0, 1.0, 0.0, 0.0]


def test_accuracy_without_think_prompt_scores_the_whole_answer() -> None:
    assert rewards.accuracy([V3_PROMPT], ["It is 42."], answer=["42"]) == [1.0]
    assert rewards.accuracy([V3_PROMPT], ["<think>\n42?\n</think>\n\n41"], answer=["42"]) == [0.0]


@pytest.mark.parametrize(("metric", "answer", "expected"), [
    ("numeric", "1.2万元", 1.0), ("exact", "Paris.", 1.0), ("exact", "paris is it", 0.0), ("f1", "Paris France", 2 / 3),
])
def test_accuracy_metrics(metric: str, answer: str, expected: float) -> None:
    reference = {"numeric": "12,000 元", "exact": "paris", "f1": "Paris"}[metric]
    score = rewards.accuracy([V3_PROMPT], [answer], metric=metric, answer=[reference])[0]
    assert score == pytest.approx(expected)


def test_accuracy_reads_the_solution_column_and_skips_rows_without_reference() -> None:
    out = rewards.accuracy([V3_PROMPT] * 2, ["x = 5", "x = 5"], reference="solution", solution=["so x = 5", None])
    assert out == [1.0, None]


def test_think_format_knows_the_r1_prompt_opened_the_block() -> None:
    # A naive format check (completion starts with <think>) scores every R1 completion 0.
    good_r1 = "Multiply.\n</think>\n\n42"
    assert rewards.think_format([R1_PROMPT], [good_r1]) == [1.0]
    assert rewards.think_format([R1_PROMPT], ["<think>\nMultiply.\n</think>\n\n42"]) == [0.0]  # opened twice
    assert rewards.think_format([R1_PROMPT], ["Multiply. 42"]) == [0.0]  # never closed
    assert rewards.think_format([R1_PROMPT], ["\n</think>\n\n42"]) == [0.0]  # empty reasoning
    assert rewards.think_format([R1_PROMPT], ["Multiply.\n</think>\n\n"]) == [0.0]  # no answer
    assert rewards.think_format([V3_PROMPT], ["<think>\nMultiply.\n</think>\n\n42"]) == [1.0]
    assert rewards.think_format([V3_PROMPT], [good_r1]) == [0.0]  # closes a block it never opened


def test_length_shaping_counts_tokens() -> None:
    ids = [[1] * n for n in (10, 70, 90, 100)]
    assert rewards.length([""] * 4, [""] * 4, completion_ids=ids, max_tokens=100, buffer=20) == [0.0, 0.0, -0.5, -1.0]


def test_language_consistency_is_the_share_of_the_target_script_in_the_reasoning() -> None:
    mixed = "先算乘法 then add\n</think>\n\n42"
    assert rewards.language([R1_PROMPT], [mixed], language="zh") == [pytest.approx(4 / 6)]
    assert rewards.language([R1_PROMPT], [mixed], language="en") == [pytest.approx(2 / 6)]
    # The answer does not count, and no reasoning scores 0.
    assert rewards.language([R1_PROMPT], ["全是中文\n</think>\n\nEnglish answer"], language="zh") == [1.0]
    assert rewards.language([V3_PROMPT], ["just an answer"], language="en") == [0.0]


def test_build_rewards_binds_options_and_keeps_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def shorter(prompts, completions, scale=1.0, **kwargs):
            return [-scale * len(c) for c in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = [RewardSpec(name="accuracy", options={"metric": "exact"}), RewardSpec(name="length", weight=0.5),
             RewardSpec(name="my_rewards:shorter", options={"scale": 2.0})]
    functions, weights = build_rewards(specs, max_completion_len=8)
    assert [f.__name__ for f in functions] == ["accuracy", "length", "shorter"]
    assert weights == [1.0, 0.5, 1.0]
    assert functions[0]([V3_PROMPT], ["Paris"], answer=["paris"], **TRL_EXTRAS) == [1.0]
    assert functions[1]([""], [""], completion_ids=[[1] * 8]) == [-1.0]  # max_tokens from grpo.max_completion_len
    assert functions[2]([""], ["abc"], **TRL_EXTRAS) == [-6.0]


@pytest.mark.parametrize(("spec", "message"), [
    (RewardSpec(name="accuracy", options={"metrc": "exact"}), "grpo.rewards[0].options: unknown option(s) metrc"),
    (RewardSpec(name="accuracy", options={"metric": "bleu"}), "grpo.rewards[0].options.metric: must be one of"),
    (RewardSpec(name="acuracy"), "grpo.rewards[0].name: unknown reward 'acuracy'"),
    (RewardSpec(name="no_such_module_xyz:f"), "grpo.rewards[0].name: cannot import 'no_such_module_xyz'"),
    (RewardSpec(name="json:no_such_function"), "grpo.rewards[0].name: json has no function 'no_such_function'"),
])
def test_bad_reward_specs_are_config_errors(spec: RewardSpec, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_rewards([spec], max_completion_len=64)
    assert message in str(info.value)


def test_the_template_familys_answer_beats_the_prompt_text() -> None:
    """dsft's GRPO data carries the family's prompt_opens_think per prompt (R1 replies inside a think block
    even where the prompt text does not end with <think>, e.g. after tool results)."""
    completion = "Look it up.\n</think>\n\n42"
    assert rewards.think_format([V3_PROMPT], [completion]) == [0.0]
    assert rewards.think_format([V3_PROMPT], [completion], prompt_opens_think=[True]) == [1.0]
    assert rewards.accuracy([V3_PROMPT], [completion], answer=["42"], prompt_opens_think=[True]) == [1.0]


def test_reward_check_for_preflight() -> None:
    from dsft.config import load_config

    grpo = rewards.check_rewards(load_config(None, ["train.objective=grpo"]))
    assert grpo.problems == ()
    assert grpo.eval_metrics == ("eval_reward", *(f"eval_rewards/{f.__name__}/mean" for f in grpo.functions))
    assert len(grpo.functions) >= 1
    other = rewards.check_rewards(load_config(None, ["grpo.rewards=[{name: nope}]"]))  # not a GRPO run
    assert (other.problems, other.eval_metrics) == ((), ())
    bad = rewards.check_rewards(load_config(None, ["train.objective=grpo", "grpo.rewards=[{name: nope}]"]))
    assert bad.problems == ("grpo.rewards[0].name: unknown reward 'nope'; use one of accuracy, think_format, "
                            "length, language or module:function",)
    assert bad.eval_metrics == ("eval_reward",)


def test_accuracy_scores_against_the_reference_answer_not_its_reasoning() -> None:
    # A solution column written R1-style: its think block is not part of what the answer must equal,
    # as in dsft eval and the distill answer check; a reference that is only a think block is none.
    solution = "<think>6*7 is 42; 41 would be wrong</think>\n\n42"
    for metric in ("numeric", "exact", "f1"):
        assert rewards.answer_accuracy(False, "42", solution, metric) == 1.0, metric
    assert rewards.answer_accuracy(False, "42", "<think>6*7=42</think>", "exact") is None
