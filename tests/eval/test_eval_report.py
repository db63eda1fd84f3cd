"""Report pieces without models: escaping, number formatting, loss curves from metrics.jsonl."""

from pathlib import Path

import pytest

from dsft.eval.charts import loss_chart_svg, loss_summary, read_loss_curves
from dsft.eval.report import comparison_rows, fmt, fmt_delta, render_html, render_markdown

RESULT = {
    "base_name": "base", "tuned_name": "run", "data": "val.jsonl", "template": "deepseek-r1",
    "base": {"exact_match": 0.25, "f1": 0.5, "bleu": 12.5, "numeric_accuracy": None, "think_rate": 1.0, "count": 4},
    "tuned": {"exact_match": 0.5, "f1": 0.375, "bleu": 20.0, "numeric_accuracy": None, "think_rate": 0.5, "count": 4},
    "loss": {"loss_first": 3.0, "loss_last": 1.5, "eval_loss_first": 2.8, "eval_loss_best": 2.25, "eval_loss_last": 2.25},
}
SAMPLE = {"source": "val.jsonl:1", "question": "<script>alert(1)</script> | ```", "reference": "a|b",
          "base_answer": "```\nx", "tuned_answer": "<b>y</b>", "base_reasoning_tokens": 3, "tuned_reasoning_tokens": 0,
          "base_unclosed": False, "tuned_unclosed": False}


def test_rows_and_formatting() -> None:
    rows = comparison_rows(RESULT["base"], RESULT["tuned"], ("exact_match", "f1", "numeric_accuracy"))
    assert rows == [("exact_match", 0.25, 0.5, 0.25), ("f1", 0.5, 0.375, -0.125)]  # all-None rows dropped
    assert (fmt(0.5), fmt(None), fmt(12), fmt_delta(-0.125), fmt_delta(None)) == ("0.5000", "-", "12.0000", "-0.1250", "-")


def test_markdown_fences_text_and_holds_the_numbers() -> None:
    md = render_markdown(RESULT, [SAMPLE])
    assert "| exact_match | 0.2500 | 0.5000 | +0.2500 |" in md
    assert "| bleu (corpus) | 12.5000 | 20.0000 | +7.5000 |" in md
    assert "| eval_loss_best | 2.2500 |" in md
    # A text holding ``` is fenced with a longer fence, so it cannot close the block early.
    assert "````text\n<script>alert(1)</script> | ```\n````" in md


def test_missing_answers_are_explained() -> None:
    sample = {**SAMPLE, "base_answer": "", "base_unclosed": True, "tuned_answer": ""}
    md = render_markdown(RESULT, [sample])
    assert "(no answer: the think block never closed)" in md and "(empty answer)" in md


def test_html_escapes_every_text() -> None:
    html = render_html(RESULT, [SAMPLE], "<svg></svg>")
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;y&lt;/b&gt;" in html
    assert 'data-metric="f1" data-side="tuned" data-value="0.375">0.3750<' in html
    assert '<td class="num down">-0.1250</td>' in html


def test_loss_curves_from_metrics_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 3.0}\nnot json\n{"step": 2, "loss": 2.0, "eval_loss": 2.5}\n'
                    '{"loss": 9.0}\n{"step": 3, "loss": NaN}\n')
    curves = read_loss_curves(path)
    assert curves == {"loss": [(1.0, 3.0), (2.0, 2.0)], "eval_loss": [(2.0, 2.5)]}
    assert loss_summary(curves)["loss_best"] == 2.0 and loss_summary(curves)["eval_loss_first"] == 2.5
    svg = loss_chart_svg(curves)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert loss_chart_svg(read_loss_curves(tmp_path / "absent.jsonl")).startswith("<p>")


def test_one_word_right_answers_score_in_sentence_bleu_and_the_table_says_which_bleu() -> None:
    """Corpus BLEU gives a right one-word answer 0 (no 4-grams); the per-sample mean gives it 100."""
    from dsft.eval.report import render_markdown
    from dsft.eval.scoring import Sample, score_samples

    aggregate = score_samples([Sample(prediction="Red", reference="Red"),
                               Sample(prediction="1961", reference="1961")], ["bleu"]).aggregate
    assert aggregate["bleu"] == 0.0 and aggregate["sentence_bleu"] == pytest.approx(100.0)
    result = {"base_name": "b", "tuned_name": "t", "data": "d", "template": "hf",
              "base": {"bleu": 0.0, "sentence_bleu": 0.0, "count": 2}, "tuned": {**aggregate}}
    report = render_markdown(result, [])
    assert "| bleu (corpus) | 0.0000 | 0.0000 |" in report
    assert "| bleu (per-sample mean) | 0.0000 | 100.0000 |" in report
    assert "corpus BLEU over all answers" in report
