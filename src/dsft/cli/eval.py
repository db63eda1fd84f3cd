"""CLI for ``dsft metrics``, ``dsft eval`` and ``dsft compare``: parse, call one library function, print.

Heavy imports (torch, transformers, the eval package) happen inside the command functions so that
``dsft --help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

# Metrics shown in terminal tables, in this order (fractions unless named bleu).
TABLE_KEYS = (
    "exact_match", "f1", "numeric_accuracy", "bleu", "rouge1", "rouge2", "rougeL", "choice_accuracy",
    "macro_f1", "think_rate", "unclosed_think_rate", "mean_reasoning_tokens", "count",
)


def _split_list(value: Optional[str]) -> Optional[list[str]]:
    return [v for v in (value or "").split(",") if v.strip()] or None


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_metrics_table(metrics: dict[str, Any], title: str) -> None:
    """One row per metric present in ``metrics``, then the skip reasons if any."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in TABLE_KEYS:
        if key in metrics:
            table.add_row(key, _format(metrics[key]))
    console = Console()
    console.print(table)
    for reason, count in (metrics.get("skipped") or {}).items():
        console.print(f"skipped {count}: {reason}", highlight=False)


def metrics_command(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="JSONL with prediction and reference per line."),
    metrics: Optional[str] = typer.Option(
        None, "--metrics", "-m", help="Comma-separated metrics (default all): exact_match,f1,numeric_accuracy,"
        "bleu,rouge,choice_accuracy,macro_f1."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Score a predictions file on the answers after </think>; bad lines are counted, not fatal."""
    from dsft.eval.predictions import score_predictions_file

    result = score_predictions_file(predictions, _split_list(metrics))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        print_metrics_table(result, f"metrics: {predictions}")


def register(app: typer.Typer) -> None:
    """Add ``metrics``, ``eval`` and ``compare`` to the root app."""
    app.command("metrics")(metrics_command)
