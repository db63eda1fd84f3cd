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


def _options(max_new_tokens: int, batch_size: int, temperature: float, top_p: float, seed: int) -> Any:
    from dsft.eval.generate import DecodingOptions

    return DecodingOptions(max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature,
                           top_p=top_p, seed=seed)


MAX_NEW_TOKENS = typer.Option(256, "--max-new-tokens", min=1, help="Generation length limit (tokens).")
BATCH_SIZE = typer.Option(8, "--batch-size", min=1, help="Prompts per generation batch.")
LIMIT = typer.Option(None, "--limit", min=1, help="Evaluate only the first N usable records.")
TEMPLATE = typer.Option(None, "--template", help="Chat template (template.name); default: the run's, or detected.")
TEMPERATURE = typer.Option(0.0, "--temperature", help="0 = greedy decoding.")
TOP_P = typer.Option(1.0, "--top-p", help="Nucleus sampling (with --temperature > 0).")
SEED = typer.Option(0, "--seed", help="Sampling seed.")
METRICS = typer.Option(None, "--metrics", "-m", help="Comma-separated metrics (default all).")
DEVICE = typer.Option(None, "--device", help="cpu or cuda:N (default: GPU if available).")
THINKING = typer.Option(None, "--thinking/--no-thinking",
                        help="Thinking mode of hybrid templates (default: the run's, else the template's).")


def eval_command(
    model_or_run: str = typer.Argument(..., help="Model directory, tiny preset, hub id, or a dsft run directory."),
    data: str = typer.Option(..., "--data", help="Eval data (any format dsft reads); the last assistant turn is the reference."),
    out: Path = typer.Option(..., "--out", help="Directory for predictions.jsonl and metrics.json."),
    max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = BATCH_SIZE, limit: Optional[int] = LIMIT,
    template: Optional[str] = TEMPLATE, temperature: float = TEMPERATURE, top_p: float = TOP_P, seed: int = SEED,
    metrics: Optional[str] = METRICS, device: Optional[str] = DEVICE, thinking: Optional[bool] = THINKING,
) -> None:
    """Generate answers with the model's own template and score them (LoRA runs: adapter not merged)."""
    from dsft.disk import output_dir
    from dsft.eval.evaluate import evaluate_model
    from dsft.models.loading import check_device

    output_dir(out)
    if device is not None:
        check_device(device)

    result = evaluate_model(model_or_run, data, out, _options(max_new_tokens, batch_size, temperature, top_p, seed),
                            limit=limit, template=template, metrics=_split_list(metrics), device=device,
                            thinking=thinking)
    print_metrics_table(result, f"eval: {model_or_run}")
    gen = result["generation"]
    typer.echo(f"{gen['generated_tokens']} tokens in {gen['elapsed_s']:.1f}s ({gen['tokens_per_s']:.1f} tok/s); "
               f"wrote {out / 'predictions.jsonl'} and {out / 'metrics.json'}")


def compare_command(
    tuned: str = typer.Option(..., "--tuned", help="The tuned run directory (or a model)."),
    data: str = typer.Option(..., "--data", help="Eval data; the same prompts go through both models."),
    out: Path = typer.Option(..., "--out", help="Directory for the reports and both models' predictions."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the run's base model)."),
    max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = BATCH_SIZE, limit: Optional[int] = LIMIT,
    template: Optional[str] = TEMPLATE, temperature: float = TEMPERATURE, top_p: float = TOP_P, seed: int = SEED,
    metrics: Optional[str] = METRICS, device: Optional[str] = DEVICE, thinking: Optional[bool] = THINKING,
    samples: int = typer.Option(5, "--samples", help="Side-by-side answers shown in the report."),
) -> None:
    """Base vs tuned on the same prompts: report.md and a self-contained report.html with deltas."""
    from rich.console import Console

    from dsft.disk import output_dir
    from dsft.eval.compare import compare_models
    from dsft.eval.report import comparison_table
    from dsft.models.loading import check_device

    output_dir(out)
    if device is not None:
        check_device(device)

    result = compare_models(base, tuned, data, out, _options(max_new_tokens, batch_size, temperature, top_p, seed),
                            limit=limit, template=template, metrics=_split_list(metrics), sample_count=samples,
                            device=device, thinking=thinking)
    Console().print(comparison_table(result))
    typer.echo(f"wrote {result['report_md']} and {result['report_html']}")


def register(app: typer.Typer) -> None:
    """Add ``metrics``, ``eval`` and ``compare`` to the root app."""
    app.command("metrics")(metrics_command)
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
