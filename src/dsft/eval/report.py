"""Before/after reports: ``report.md`` and a self-contained ``report.html``.

Both hold the same numbers, formatted the same way (4 decimals; BLEU on its 0-100 scale): the metric
table with deltas (tuned - base), the reasoning statistics, the run's loss curves and a side-by-side
sample of answers. Every piece of model or data text is escaped (HTML) or fenced (Markdown), so an
answer holding ``<script>`` or ``|`` cannot break the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

TASK_KEYS = ("exact_match", "f1", "numeric_accuracy", "bleu", "sentence_bleu", "rouge1", "rouge2", "rougeL", "choice_accuracy",
             "macro_f1")
THINK_KEYS = ("think_rate", "unclosed_think_rate", "mean_reasoning_tokens")
LOSS_KEYS = ("loss_first", "loss_last", "eval_loss_first", "eval_loss_best", "eval_loss_last")


# How a metric is named in the tables, where the key alone does not say which BLEU it is.
METRIC_LABELS = {"bleu": "bleu (corpus)", "sentence_bleu": "bleu (per-sample mean)"}
BLEU_NOTE = ("BLEU in [0, 100]: `bleu (corpus)` is sacrebleu's corpus BLEU over all answers (0 for right answers "
             "shorter than 4 tokens), `bleu (per-sample mean)` the mean of each answer's smoothed sentence BLEU.")


def metric_label(key: str) -> str:
    """The name a table shows for metric ``key``."""
    return METRIC_LABELS.get(key, key)


def fmt(value: Any) -> str:
    """The one number format of the reports: 4 decimals, ``-`` for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4f}"


def fmt_delta(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def delta(base: Any, tuned: Any) -> float | None:
    """``tuned - base`` when both are numbers."""
    if isinstance(base, (int, float)) and isinstance(tuned, (int, float)):
        return float(tuned) - float(base)
    return None


def comparison_rows(base: dict[str, Any], tuned: dict[str, Any],
                    keys: Sequence[str] = TASK_KEYS + THINK_KEYS) -> list[tuple[str, Any, Any, float | None]]:
    """``(metric, base, tuned, delta)`` for each key either side reports."""
    return [(k, base.get(k), tuned.get(k), delta(base.get(k), tuned.get(k)))
            for k in keys if base.get(k) is not None or tuned.get(k) is not None]


def comparison_table(result: dict[str, Any]) -> Any:
    """The before/after metric table (as in report.md) as a ``rich`` Table, for terminals."""
    from rich.table import Table

    title = f"{result['base_name']} -> {result['tuned_name']} ({result['tuned'].get('count', 0)} prompts)"
    table = Table(title=title)
    for column in ("metric", "base", "tuned", "delta"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, base, tuned, change in comparison_rows(result["base"], result["tuned"]):
        table.add_row(metric_label(key), fmt(base), fmt(tuned), fmt_delta(change))
    return table


def shown_answer(sample: dict[str, Any], side: str) -> str:
    """The answer of ``side`` as shown in a report; a note in parentheses when there is none."""
    answer = sample.get(f"{side}_answer") or ""
    if answer:
        return answer
    return "(no answer: the think block never closed)" if sample.get(f"{side}_unclosed") else "(empty answer)"


def _fence(text: str | None) -> str:
    text = text or ""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text}\n{ticks}"


def _md_table(rows: list[tuple[str, Any, Any, float | None]]) -> list[str]:
    lines = ["| metric | base | tuned | delta |", "|---|---:|---:|---:|"]
    lines += [f"| {metric_label(k)} | {fmt(b)} | {fmt(t)} | {fmt_delta(d)} |" for k, b, t, d in rows]
    return lines


def skipped_lines(metrics: dict[str, Any]) -> list[str]:
    """``skipped N: REASON (first at FILE:LINE)`` for each reason an evaluation left records or samples out.

    >>> skipped_lines({"skipped": {"data: malformed JSON": 2}, "skipped_first": {"data: malformed JSON": "q.jsonl:1"}})
    ['skipped 2: data: malformed JSON (first at q.jsonl:1)']
    """
    first = metrics.get("skipped_first") or {}
    return [f"skipped {count}: {reason}" + (f" (first at {first[reason]})" if reason in first else "")
            for reason, count in (metrics.get("skipped") or {}).items()]


def render_markdown(result: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    """``report.md`` for a :func:`dsft.eval.compare.compare_models` result."""
    base, tuned = result["base"], result["tuned"]
    lines = [
        "# Before / after", "",
        f"- base: `{result['base_name']}`", f"- tuned: `{result['tuned_name']}`",
        f"- data: `{result['data']}` ({tuned.get('count', 0)} prompts; template `{result['template']}`)",
        *[f"- {line}" for line in skipped_lines(tuned)], "",
        f"Scores use the answer after `</think>`; fractions in [0, 1]. {BLEU_NOTE}", "",
        "## Metrics", "", *_md_table(comparison_rows(base, tuned, TASK_KEYS)), "",
        "## Reasoning", "", *_md_table(comparison_rows(base, tuned, THINK_KEYS)), "",
        "## Loss", "",
    ]
    loss = result.get("loss") or {}
    if any(loss.get(k) is not None for k in LOSS_KEYS):
        lines += ["| value | loss |", "|---|---:|"] + [f"| {k} | {fmt(loss.get(k))} |" for k in LOSS_KEYS]
        if result.get("loss_png"):
            lines += ["", f"![loss curves]({result['loss_png']})"]
    else:
        lines.append("No training metrics (the tuned model is not a run directory with metrics.jsonl).")
    lines += ["", f"## Samples ({len(samples)})", ""]
    for number, sample in enumerate(samples, start=1):
        lines += [f"### {number}. {sample.get('source') or ''}".rstrip(), "", "**Prompt**", "",
                  _fence(sample["question"]), "", "**Reference**", "", _fence(sample["reference"]), ""]
        for side in ("base", "tuned"):
            lines += [f"**{side.capitalize()}** (reasoning: {sample[side + '_reasoning_tokens']} tokens)", "",
                      _fence(shown_answer(sample, side)), ""]
    return "\n".join(lines)


_CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}.up{color:#080}.down{color:#b00}
pre{white-space:pre-wrap;margin:0;font:12px/1.4 ui-monospace,monospace}th{background:#f4f4f4}"""


def _html_table(rows: list[tuple[str, Any, Any, float | None]]) -> str:
    out = ["<table><tr><th>metric</th><th>base</th><th>tuned</th><th>delta</th></tr>"]
    for key, b, t, d in rows:
        trend = "" if d is None or d == 0 else (' up' if d > 0 else ' down')
        cells = "".join(
            f'<td class="num" data-metric="{escape(key)}" data-side="{side}" data-value="{escape(repr(v))}">{fmt(v)}</td>'
            for side, v in (("base", b), ("tuned", t))
        )
        out.append(f"<tr><td>{escape(metric_label(key))}</td>{cells}<td class=\"num{trend}\">{fmt_delta(d)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _html_samples(samples: list[dict[str, Any]]) -> str:
    out = ["<table><tr><th>#</th><th>prompt</th><th>reference</th><th>base</th><th>tuned</th></tr>"]
    for number, s in enumerate(samples, start=1):
        cells = [s["question"], s["reference"], shown_answer(s, "base"), shown_answer(s, "tuned")]
        body = "".join(f"<td><pre>{escape(c or '')}</pre></td>" for c in cells)
        out.append(f"<tr><td>{number}</td>{body}</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(result: dict[str, Any], samples: list[dict[str, Any]], loss_svg: str) -> str:
    """``report.html``: one file, inline CSS and SVG, no scripts, every text escaped."""
    base, tuned = result["base"], result["tuned"]
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8"><title>dsft: before / after</title>',
        f"<style>{_CSS}</style></head><body>", "<h1>Before / after</h1>",
        f"<p>base: <code>{escape(str(result['base_name']))}</code><br>tuned: <code>{escape(str(result['tuned_name']))}"
        f"</code><br>data: <code>{escape(str(result['data']))}</code> ({tuned.get('count', 0)} prompts; template "
        f"<code>{escape(str(result['template']))}</code>)"
        + "".join(f"<br>{escape(line)}" for line in skipped_lines(tuned)) + "</p>",
        "<p>Scores use the answer after <code>&lt;/think&gt;</code>; fractions in [0, 1]. "
        f"{escape(BLEU_NOTE).replace('`', '')}</p>",
        "<h2>Metrics</h2>", _html_table(comparison_rows(base, tuned, TASK_KEYS)),
        "<h2>Reasoning</h2>", _html_table(comparison_rows(base, tuned, THINK_KEYS)),
        "<h2>Loss</h2>", loss_svg,
        f"<h2>Samples ({len(samples)})</h2>", _html_samples(samples),
        "</body></html>",
    ])
