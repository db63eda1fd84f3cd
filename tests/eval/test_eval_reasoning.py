"""Reasoning-aware scoring: answers after </think>, think statistics."""

import pytest

from dsft.config import load_config
from dsft.eval.reasoning import parse_output, prompt_opens_think, reasoning_stats
from dsft.eval.scoring import Sample, resolve_metrics, score_samples
from dsft.eval.selection import eval_config_problems
from dsft.errors import DsftError


def test_parse_output_cases() -> None:
    closed = parse_output("<think>\n想一想\n</think>\n\n北京")
    assert (closed.reasoning, closed.answer, closed.unclosed, closed.reasoned) == ("\n想一想\n", "北京", False, True)
    plain = parse_output("Paris")
    assert (plain.reasoning, plain.answer, plain.unclosed) == (None, "Paris", False)
    unclosed = parse_output("<think>still going")
    assert (unclosed.answer, unclosed.unclosed) == ("", True)
    empty_think = parse_output("</think>\n\n42")
    assert (empty_think.answer, empty_think.reasoned) == ("42", False)
    # R1 prompts end with "<think>\n": the output starts inside the block without a tag.
    r1 = parse_output("推理过程\n</think>\n\n42", prompt_opened_think=True)
    assert (r1.reasoning, r1.answer) == ("推理过程\n", "42")
    assert parse_output("还在想", prompt_opened_think=True).unclosed


def test_a_think_block_after_the_answer_is_not_scored() -> None:
    # vLLM's split puts everything after the first </think> in the content, a second think block too;
    # the scored answer holds none of it (no block, no stray tag), and the block still counts as closed.
    for output, answer in [("<think>a</think>Paris<think>b</think>", "Paris"),
                           ("<think>a</think>\n<think>b</think>\nParis", "Paris"),
                           ("<think>a</think>Paris<think>not closed again", "Paris"),
                           ("a</think>Paris</think>", "Paris")]:
        parsed = parse_output(output, prompt_opened_think=not output.startswith("<think>"))
        assert (parsed.answer, parsed.unclosed) == (answer, False), output
        scores = score_samples([Sample(output, "Paris")]).per_sample[0]
        assert scores["exact_match"] == scores["f1"] == 1.0, output


def test_prompt_opens_think() -> None:
    assert prompt_opens_think("<｜User｜>hi<｜Assistant｜><think>\n")
    assert not prompt_opens_think("<｜User｜>hi<｜Assistant｜></think>")
    assert not prompt_opens_think("User: hi\n\nAssistant:")


def test_reasoning_stats_hand_computed() -> None:
    outputs = [
        parse_output("<think>\n想一想\n</think>\n\n答案"),  # reasoned, 3 CJK tokens
        parse_output("no think here"),  # no reasoning
        parse_output("<think>unclosed reasoning words"),  # reasoned, 3 word tokens, unclosed
        parse_output("</think>\n\nonly answer"),  # empty reasoning: did not reason
    ]
    assert reasoning_stats(outputs) == {"think_rate": 0.5, "unclosed_think_rate": 0.25, "mean_reasoning_tokens": 3.0}


def test_scores_use_the_answer_not_the_reasoning() -> None:
    samples = [
        # EN: reasoning mentions other words; the answer alone matches exactly.
        Sample("<think>\nMaybe Lyon? No.\n</think>\n\nParis", "paris"),
        # ZH numeric: the reasoning ends with 8, the answer says 7 -> wrong.
        Sample("<think>先算 3+5=8</think>答案：7", "8"),
        # Unclosed: no answer at all -> scored 0 everywhere, not skipped.
        Sample("<think>我在想", "北京"),
    ]
    result = score_samples(samples, ["exact_match", "numeric_accuracy", "f1"])
    assert [s["exact_match"] for s in result.per_sample] == [1.0, 0.0, 0.0]
    assert [s["numeric_accuracy"] for s in result.per_sample] == [None, 0.0, None]
    assert result.aggregate["exact_match"] == pytest.approx(1 / 3)
    assert result.aggregate["numeric_accuracy"] == 0.0
    assert result.aggregate["counts"]["numeric_accuracy"] == 1
    assert result.skipped == {"numeric_accuracy: reference has no number": 2}
    assert result.aggregate["think_rate"] == 1.0
    assert result.aggregate["unclosed_think_rate"] == pytest.approx(1 / 3)
    # Scoring raw text instead would have given the first sample no exact match.
    assert score_samples([Sample("Maybe Lyon? No. Paris", "paris")], ["exact_match"]).aggregate["exact_match"] == 0.0


def test_reference_think_block_is_removed_too() -> None:
    result = score_samples([Sample("42", "<think>6*7</think>\n\n42")], ["exact_match"])
    assert result.aggregate["exact_match"] == 1.0


def test_choice_and_label_tasks() -> None:
    samples = [
        Sample("答案是B", "B", choices=["甲", "乙", "丙", "丁"]),
        Sample("I pick (C)", "x", choices=["a", "b", "c", "d"], label="D"),
        Sample("答案是A", "苹果", choices=["苹果", "汽车"], label="苹果"),  # label given as the choice text
        Sample("正面", "正面", label="正面"),
        Sample("负面", "正面", label="正面"),
        Sample("负面", "负面", label="负面"),
    ]
    agg = score_samples(samples, ["choice_accuracy", "macro_f1"]).aggregate
    assert agg["choice_accuracy"] == pytest.approx(2 / 3)
    # 正面: TP 1, predicted 1, true 2 -> 2/3; 负面: TP 1, predicted 2, true 1 -> 2/3
    assert agg["macro_f1"] == pytest.approx(2 / 3)
    assert agg["counts"] == {"choice_accuracy": 3, "macro_f1": 3}


def test_metric_names() -> None:
    assert resolve_metrics(["rougeL", "em", "rouge1"]) == ["rouge", "exact_match"]
    with pytest.raises(DsftError, match="unknown metric"):
        resolve_metrics(["bleurt"])


def test_no_samples_gives_nulls_not_errors() -> None:
    agg = score_samples([]).aggregate
    assert agg["count"] == 0 and agg["exact_match"] is None and agg["bleu"] is None and agg["think_rate"] is None


@pytest.mark.parametrize(("names", "said"), [
    (["BLEU", "ROUGE-L"], "unknown metric(s) 'BLEU' (did you mean 'bleu'?), 'ROUGE-L' (did you mean 'rougeL'?)"),
    (["EM", "F1"], "unknown metric(s) 'EM' (did you mean 'exact_match'?), 'F1' (did you mean 'f1'?)"),
    (["Macro-F1", "num_acc"], "unknown metric(s) 'Macro-F1' (did you mean 'macro_f1'?), 'num_acc' (did you mean "
                              "'numeric_accuracy'?)"),
    (["AUC"], "unknown metric(s) 'AUC' (not computed: generation eval produces labels, not scores to rank; macro_f1 "
              "scores label tasks)"),
])
def test_a_guide_s_metric_name_says_the_name_dsft_knows_it_by(names, said) -> None:
    """Guide 001 names its metrics BLEU, ROUGE-L, F1, EM, Macro-F1 and AUC, and guide 000 its own num_acc: each was
    'unknown metric(s)' and the list, with no word that 'ROUGE-L' is rougeL (or that AUC is not computed)."""
    with pytest.raises(DsftError) as info:
        resolve_metrics(names)
    assert str(info.value).startswith(said + "; choose from exact_match")


def test_an_eval_metric_written_as_the_guide_writes_it_says_the_name_dsft_knows_it_by() -> None:
    [problem] = eval_config_problems(load_config(None, ["eval.metric=eval_num_acc"]).eval)
    assert problem.startswith("eval.metric: unknown metric 'eval_num_acc' (did you mean 'numeric_accuracy'?); choose "
                              "one of loss, perplexity")
