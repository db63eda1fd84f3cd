"""The data report: JSON (machine), Markdown (human) and token-length histograms (PNG)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dsft.config.schema import DsftConfig
from dsft.data.clean import Removed
from dsft.data.conversation import Conversation
from dsft.data.ledger import Ledger
from dsft.data.reasoning_policy import length_stats, reasoning_stats
from dsft.data.tokens import TokenCounts
from dsft.disk import replaced_atomically

HISTOGRAM_FILE = "token_lengths.png"
REASONING_HISTOGRAM_FILE = "reasoning_lengths.png"


def write_rows(rows: Iterable[dict[str, Any]], path: Path, ensure_ascii: bool = False) -> None:
    """One JSON object per line (``ensure_ascii``: characters beyond ASCII as ``\\u`` escapes, so that text holding
    undecodable input survives), the file replaced whole: the splits, removals and reports of SFT and preference
    preparations."""
    with replaced_atomically(path) as handle:  # every process of a launched job writes it
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")


def write_jsonl(conversations: Sequence[Conversation], path: Path) -> None:
    """Conversations in OpenAI messages form (:meth:`Conversation.to_dict`), one per line."""
    write_rows((conversation.to_dict() for conversation in conversations), path)


def write_removed(removed: dict[str, list[Removed]], path: Path) -> None:
    """Every conversation a cleaning step dropped: the step, the reason, the score (scoring steps) and the
    conversation."""
    write_rows((_removed_row(step, item) for step, items in removed.items() for item in items), path, ensure_ascii=True)


def _removed_row(step: str, item: Removed) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step, "reason": item.reason, "where": item.conversation.meta.get("origin")}
    if item.score is not None:
        row["score"] = round(float(item.score), 6)
    row["conversation"] = item.conversation.to_dict()
    return row


def write_histograms(lengths: dict[str, list[int]], path: Path, title: str, xlabel: str, draw: bool = True) -> bool:
    """One histogram per split on shared axes; False (nothing written) when there is no data. ``draw=False``:
    only whether there is one (another process of a launched job draws it into the same directory)."""
    series = {name: values for name, values in lengths.items() if values}
    if not series or not draw:
        return bool(series)
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    upper = max(max(v) for v in series.values())
    bins = min(50, max(upper, 1))
    for name, values in series.items():
        axes.hist(values, bins=bins, range=(0, max(upper, 1)), alpha=0.55, label=f"{name} ({len(values)})")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("conversations")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def build_report(
    sources: dict[str, list[str]], splits: dict[str, list[Conversation]], tokens: TokenCounts, ledger: Ledger,
    contamination: dict[str, Any] | None, before_policy: dict[str, Any], cfg: DsftConfig, out: Path,
    draw_histograms: bool = True,
) -> dict[str, Any]:
    """The data report (``data_report.json``) of an SFT preparation, after checking that every record read is
    accounted for; writes the token-length histograms beside it into ``out`` (``draw_histograms=False``: the
    report lists them all the same, for the process that draws them)."""
    kept = sum(len(part) for part in splits.values())
    ledger.check_identity(kept)
    totals = {name: [tokens[id(c)][1].total for c in part] for name, part in splits.items()}
    thinking = {name: [tokens[id(c)][1].reasoning for c in part if tokens[id(c)][1].reasoning]
                for name, part in splits.items()}
    histograms = []
    if write_histograms(totals, out / HISTOGRAM_FILE, "Tokens per conversation", "tokens (text, no template)",
                        draw_histograms):
        histograms.append(HISTOGRAM_FILE)
    if write_histograms(thinking, out / REASONING_HISTOGRAM_FILE, "Reasoning tokens per conversation",
                        "reasoning tokens", draw_histograms):
        histograms.append(REASONING_HISTOGRAM_FILE)
    by_role: dict[str, list[int]] = {}
    for conversation in splits["train"]:
        for role, count in tokens[id(conversation)][1].by_role().items():
            by_role.setdefault(role, []).append(count)
    return {
        "read": ledger.read, "kept": kept, "rejected": len(ledger.rejections), "removed": ledger.removed_counts(),
        "added": dict(ledger.added),
        "augment_skipped": dict(ledger.augment_skipped),
        "splits": {name: len(part) for name, part in splits.items()},
        "inputs": sources,
        "formats": dict(ledger.formats),
        "rejected_examples": ledger.rejected_examples(), "rejected_reasons": ledger.rejected_reasons(),
        "tokens": {name: length_stats(values) for name, values in totals.items()},
        "train_tokens_by_role": {role: length_stats(values) for role, values in sorted(by_role.items())},
        "reasoning": {
            "policy": cfg.data.reasoning, "think_ratio": cfg.data.think_ratio, "train_before_policy": before_policy,
            "splits": {name: reasoning_stats(part, [tokens[id(c)][1].reasoning for c in part])
                       for name, part in splits.items()},
        },
        "contamination": contamination,
        "histograms": histograms,
        "seed": cfg.train.seed,
        "data_config": cfg.data.model_dump(mode="json"),
        # What the token counts above were measured with, and what `dsft data inspect DIR` renders with.
        "prepared_for": {"model": cfg.model.name_or_path, "template": cfg.template.name,
                         "masking": cfg.template.masking},
    }


REASONS_SAID = 3  # the most frequent reasons a preparation says on the terminal (the report counts more)
REASON_CHARS = 200  # a reason said longer is cut in its middle (an unknown format lists every key it met)


def shortened_reason(reason: str, limit: int = REASON_CHARS) -> str:
    """``reason`` in at most ``limit`` characters: whole when it fits, else its beginning and its end with
    ``...`` where the middle was cut. The end kept is the reason's last clause (after its last ``"; "``: what to
    do about it, such as the ``iconv`` command for a file in another encoding) when that takes at most two
    thirds of the limit, else the last third of the limit's characters; the beginning ends at a word.

    >>> keys = ", ".join(f"column_{n}" for n in range(12))
    >>> shortened_reason(f"unknown format (keys: {keys}); set data.format and data.columns", limit=80).split("...")
    ['unknown format (keys: column_0, column_1', '; set data.format and data.columns']
    >>> shortened_reason("x" * 30, limit=20).split("...")
    ['xxxxxxxxxxx', 'xxxxxx']
    >>> shortened_reason("short; enough", limit=20)
    'short; enough'
    """
    if len(reason) <= limit:
        return reason
    clause = reason.rpartition("; ")[2]
    end = len(clause) + 2 if "; " in reason and len(clause) + 2 <= limit * 2 // 3 else limit // 3
    head = reason[:limit - 3 - end]
    if reason[len(head)] != " " and head.rfind(" ") > len(head) // 2:  # cut at the word's start, not inside it
        head = head[:head.rfind(" ")]
    return head.rstrip(" ,;") + "..." + reason[-end:]


def rejection_notice(report: dict[str, Any], out: Path, source: str = "data") -> str | None:
    """What a preparation says on the terminal when it rejected records (None when it rejected none): the
    count, where every one is with why, and the most frequent reasons, each with its count and the place of
    its first record. ``dsft data prepare`` and ``dsft train`` (which prepares its data itself) say the same.
    ``source`` names the records counted (``data.val``: a split's own files, see ``report``'s keys below).

    >>> print(rejection_notice({"read": 7, "rejected": 6, "rejected_reasons": [
    ...     {"reason": "malformed JSON: Expecting value (column N)", "records": 5, "first": "bad.jsonl:2"},
    ...     {"reason": "messages[N].content: empty assistant message", "records": 1, "first": "bad.jsonl:7"}]},
    ...     Path("d")))
    data: 6 of 7 records rejected; each one and why: d/rejects.jsonl
      5 x malformed JSON: Expecting value (column N) (first: bad.jsonl:2)
      1 x messages[N].content: empty assistant message (first: bad.jsonl:7)
    """
    if not report.get("rejected"):
        return None
    lines = [f"{source}: {report['rejected']} of {report['read']} records rejected; each one and why: "
             f"{out / 'rejects.jsonl'}"]
    reasons = report.get("rejected_reasons") or []
    for reason in reasons[:REASONS_SAID]:
        lines.append(f"  {reason['records']} x {shortened_reason(reason['reason'])} (first: {reason['first']})")
    if len(reasons) > REASONS_SAID:
        lines.append("  and other, less frequent reasons")
    return "\n".join(lines)


def _table(rows: list[tuple[str, Any]], head: tuple[str, str]) -> list[str]:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return lines


def _stats_rows(stats: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| split | count | mean | p50 | p90 | max |", "|---|---|---|---|---|---|"]
    for name, s in stats.items():
        lines.append(f"| {name} | {s['count']} | {s['mean']} | {s['p50']} | {s['p90']} | {s['max']} |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """A one-page summary of ``data_report.json``."""
    lines = ["# Data report", "", f"Inputs: {', '.join(report['inputs']['train']) or '(none)'}"]
    for name in ("val", "test"):
        if report["inputs"][name]:
            lines.append(f"Explicit {name}: {', '.join(report['inputs'][name])}")
    lines += ["", "## Accounting", ""]
    rows: list[tuple[str, Any]] = [("read", report["read"]), ("rejected", report["rejected"])]
    rows += [(f"removed: {step}", count) for step, count in report["removed"].items()]
    rows += [(f"added: {step}", count) for step, count in report["added"].items()]
    rows += [("kept", report["kept"])]
    lines += _table(rows, ("", "records"))
    lines += ["", "`read + sum(added) = kept + rejected + sum(removed)`; the splits hold the kept records."]
    skipped = report.get("augment_skipped") or {}
    if skipped:
        lines += ["", "Augmentation attempts that generated nothing (not in the ledger): "
                  + ", ".join(f"{reason} {count}" for reason, count in skipped.items()) + "."]
    lines += ["", "## Splits", ""]
    lines += _table(list(report["splits"].items()), ("split", "conversations"))
    if report.get("mix"):
        lines += ["", "## Mixed into train (data.mix)", "",
                  "| source | ratio | records after cleaning | drawn into train | of which repeats |",
                  "|---|---|---|---|---|"]
        lines += [f"| {m['path']} | {m['ratio']:g} | {m['available']} | {m['drawn']} | {m['repeats']} |"
                  for m in report["mix"]]
    lines += ["", "## Formats", ""] + _table(list(report["formats"].items()), ("format", "records"))
    lines += ["", "## Tokens per conversation (text tokens, no template markers)", ""]
    lines += _stats_rows(report["tokens"])
    reasoning = report["reasoning"]
    lines += ["", f"## Reasoning (policy: {reasoning['policy']})", ""]
    lines += ["| split | samples | with reasoning | mean tokens | p50 | p90 | max |", "|---|---|---|---|---|---|---|"]
    for name, s in reasoning["splits"].items():
        r = s["reasoning_tokens"]
        lines.append(f"| {name} | {s['samples']} | {s['with_reasoning']} | {r['mean']} | {r['p50']} | {r['p90']} "
                     f"| {r['max']} |")
    for name, dist in (report.get("semantic") or {}).items():
        lines += ["", f"## Semantic score: {name}", ""]
        lines += [f"{dist['count']} scored, {dist['unscored']} not scorable (no question)."]
        if dist["count"]:
            lines += ["", "| mean | min | p10 | p25 | p50 | p75 | p90 | max |", "|---|---|---|---|---|---|---|---|",
                      "| " + " | ".join(str(dist[k]) for k in ("mean", "min", "p10", "p25", "p50", "p75", "p90", "max"))
                      + " |",
                      "", "| bin | pairs |", "|---|---|"]
            edges, counts = dist["histogram"]["edges"], dist["histogram"]["counts"]
            lines += [f"| {low} – {high} | {count} |" for low, high, count in zip(edges, edges[1:], counts)]
    contamination = report.get("contamination")
    if contamination:
        lines += ["", "## Contamination", "",
                  f"{contamination['contaminated']} train conversation(s) share a {contamination['ngram']}-gram "
                  f"with val/test ({'dropped' if contamination['dropped'] else 'kept'})."]
        lines += [f"- {example}" for example in contamination["examples"]]
    if report.get("rejected_reasons"):  # numbers standing alone in a reason are written N (dsft.data.ledger)
        lines += ["", "## Rejected, by reason (the 10 most frequent)", "", "| records | reason | first |",
                  "|---|---|---|"]
        lines += ["| {} | {} | {} |".format(r["records"], r["reason"].replace("|", "\\|"), r["first"])
                  for r in report["rejected_reasons"]]
    if report["rejected"]:
        lines += ["", "## Rejected (first 10; all in rejects.jsonl)", ""]
        lines += [f"- {example}" for example in report["rejected_examples"]]
    lines += ["", "## Histograms", ""] + [f"![{name}]({name})" for name in report["histograms"]]
    return "\n".join(lines) + "\n"
