"""CLI for ``dsft metrics``, ``dsft eval`` and ``dsft compare``: parse, call one library function, print.

Heavy imports (torch, transformers, the eval package) happen inside the command functions so that
``dsft --help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from dsft.cli import base_model as base_model_flag
from dsft.cli.empty_paths import A_MODEL_OR_RUN, SOME_DATA, empty_refused
from dsft.cli.thinking_flag import say_unused_thinking

# Metrics shown in terminal tables, in this order (fractions unless named bleu).
TABLE_KEYS = (
    "exact_match", "f1", "numeric_accuracy", "bleu", "sentence_bleu", "rouge1", "rouge2", "rougeL",
    "choice_accuracy", "macro_f1", "think_rate", "unclosed_think_rate", "mean_reasoning_tokens", "count",
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

    from dsft.eval.report import metric_label, skipped_lines

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in TABLE_KEYS:
        if key in metrics:
            table.add_row(metric_label(key), _format(metrics[key]))
    console = Console()
    console.print(table)
    for line in skipped_lines(metrics):
        console.print(line, highlight=False, soft_wrap=True)  # a path is not broken over lines


def metrics_command(
    predictions: Path = typer.Option(..., "--predictions", "-p",
                                     help="JSONL with prediction and reference (or a list of references) per line."),
    metrics: Optional[str] = typer.Option(
        None, "--metrics", "-m", help="Comma-separated metrics (default all): exact_match,f1,numeric_accuracy,"
        "bleu,rouge,choice_accuracy,macro_f1."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Score a predictions file on the answers after </think>; bad lines are counted, not fatal."""
    from dsft.eval.predictions import score_predictions_file

    result = score_predictions_file(predictions, metrics_flag(metrics))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        print_metrics_table(result, f"metrics: {predictions}")


def check_inputs(data: str, models: list[str], base_model: str | None = None) -> None:
    """Refuse a missing data file, an unresolvable model name or ``--base-model`` before torch is imported (a
    run directory is opened later, by the command)."""
    from dsft.data.input_checks import refuse_outputs_inside
    from dsft.data.prepared_folder import UNFINISHED_PREPARATION, preparation_state
    from dsft.data.readers import expand_inputs
    from dsft.data.split import split_file
    from dsft.errors import DataError
    from dsft.export.source import check_source
    from dsft.training.rundir import RunDir

    # A directory is read whole: a prepared one would score its train split with the rest, a run its metrics.
    if RunDir.is_run(data):
        raise DataError(f"--data {data}: a run directory, not data; pass a data file, e.g. its "
                        f"{Path(data) / 'data' / split_file('val')}")
    state = preparation_state(data)
    if state == "unfinished":  # its files are no finished split, and reading it whole would read its rejects
        raise DataError(f"--data {data}: {UNFINISHED_PREPARATION}, then pass one of its splits, e.g. "
                        f"--data {Path(data) / split_file('val')}")
    if state == "finished":
        raise DataError(f"--data {data}: a directory written by dsft data prepare; reading all of it would score its "
                        f"train split too: pass one split, e.g. --data {Path(data) / split_file('val')}")
    expand_inputs([data])
    refuse_outputs_inside(data, f"--data {data}", "scored as evaluation records")  # as data preparation refuses
    for name in models:
        check_source(name, base_model)


def say_skipped_data(data: str) -> None:
    """Warn of the files of unread types in a --data directory (named alone, such a file is refused); said once
    every check has passed, just before the work, so a refusal comes alone."""
    from dsft.data.input_checks import directory_skip_warnings

    for warning in directory_skip_warnings([("--data", data)]):
        typer.echo(warning, err=True)


def eval_defaults(model_or_run: str, config: Optional[Path]) -> Any:
    """The `eval:` section that supplies defaults: --config's, else a run directory's config.yaml's, else the
    schema's (max_new_tokens 256, batch_size 8, temperature 0, top_p 1, every metric)."""
    from dsft.config import EvalConfig, load_config
    from dsft.eval.selection import eval_config_problems
    from dsft.training.rundir import RunDir

    if config is not None:
        section = load_config(config).eval
    elif (run := RunDir.find(model_or_run)) is not None and run.config_path.is_file():
        section = run.config.eval  # a checkpoint's run's too
    else:
        return EvalConfig()
    metric_problems = [p for p in eval_config_problems(section) if p.startswith("eval.metrics")]
    if metric_problems:
        from dsft.errors import ConfigError

        raise ConfigError(f"{config or model_or_run}: {metric_problems[0]}")
    return section


def config_data(config: Optional[Path]) -> Any:
    """--config's data section (its data.format and data.columns read --data), or None without --config."""
    from dsft.config import load_config

    return load_config(config).data if config is not None else None


def check_generation_room(models: list[str], max_new_tokens: Optional[int], base_model: Optional[str] = None) -> None:
    """Refuse ``--max-new-tokens`` beyond the positions a model places (its config.json, no weights; a run
    directory's model is the one its config.yaml trained, or ``--base-model``), before anything loads: a model that
    never emits EOS generated ``--max-new-tokens 9223372036854775808`` tokens for ever."""
    from dsft.errors import DsftError
    from dsft.models.resolve import peek_model_config
    from dsft.training.model_limits import context_length, new_tokens_problem
    from dsft.training.rundir import RunDir

    if max_new_tokens is None:
        return
    for name in models:
        model = name
        run = RunDir.find(name)
        if run is not None and run.config_path.is_file():
            model = base_model or run.config.model.name_or_path
        values = peek_model_config(model)
        positions = context_length(values) if values else None
        if positions is not None and max_new_tokens > positions:
            raise DsftError(new_tokens_problem(f"--max-new-tokens {max_new_tokens}", positions, model))


# The flag of each decoding option, so that a wrong value is refused naming what the user typed.
DECODING_FLAGS = {"max_new_tokens": "--max-new-tokens", "batch_size": "--batch-size", "temperature": "--temperature",
                  "top_p": "--top-p"}


def _options(defaults: Any, max_new_tokens: Optional[int], batch_size: Optional[int], temperature: Optional[float],
             top_p: Optional[float], seed: int) -> Any:
    """Decoding options: each flag given on the command line, else the `eval:` section's value (checked with the
    config); a wrong flag value is refused naming the flag."""
    from dataclasses import replace

    from dsft.errors import DsftError
    from dsft.eval.generate import DecodingOptions, with_overrides

    base = DecodingOptions(max_new_tokens=defaults.max_new_tokens, batch_size=defaults.batch_size,
                           temperature=defaults.temperature, top_p=defaults.top_p, seed=seed)
    given = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "temperature": temperature, "top_p": top_p}
    flagged = {name: value for name, value in given.items() if value is not None}
    wrong = [f"{DECODING_FLAGS[name]} {flagged[name]:g}: {why}"
             for name, why in replace(base, **flagged).problems().items() if name in flagged]
    if wrong:
        raise DsftError(wrong[0]) if len(wrong) == 1 else DsftError(f"{len(wrong)} wrong generation flags", wrong)
    return with_overrides(base, **flagged)


def metrics_flag(flag: Optional[str]) -> Optional[list[str]]:
    """``--metrics`` as a list of names (None when the flag was not given); a name that is no metric, or a value
    that names none, is refused naming the flag and the known metrics, before anything loads."""
    from dsft.errors import DsftError
    from dsft.eval.scoring import METRICS, resolve_metrics

    if flag is None:
        return None
    names = _split_list(flag)
    if not names:
        raise DsftError(f"--metrics {flag!r}: names no metric; choose from {', '.join(METRICS)} (or leave the flag "
                        "out to score them all)")
    try:
        resolve_metrics(names)
    except DsftError as exc:
        raise DsftError(f"--metrics {flag}: {exc}") from None
    return names


def _metrics(defaults: Any, flag: Optional[str]) -> Optional[list[str]]:
    """The metrics to score (None: all): --metrics, else eval.metrics (checked with the config)."""
    return metrics_flag(flag) if flag is not None else (list(defaults.metrics) or None)


CONFIG = typer.Option(None, "--config", help="YAML whose `eval:` section gives the defaults of the generation options "
                      "and metrics, and whose data.format / data.columns read --data [default: a run directory's own "
                      "config.yaml, else the schema's defaults].")
MAX_NEW_TOKENS = typer.Option(None, "--max-new-tokens", min=1, help="Generation length limit (tokens) "
                              "[default: eval.max_new_tokens, 256].")
BATCH_SIZE = typer.Option(None, "--batch-size", min=1, help="Prompts per generation batch [default: eval.batch_size, 8].")
LIMIT = typer.Option(None, "--limit", min=1, help="Evaluate only the first N usable records.")
TEMPLATE = typer.Option(None, "--template", help="Chat template (template.name); default: the run's, or detected.")
TEMPERATURE = typer.Option(None, "--temperature", help="0 = greedy decoding [default: eval.temperature, 0].")
TOP_P = typer.Option(None, "--top-p", help="Nucleus sampling (with --temperature > 0) [default: eval.top_p, 1].")
SEED = typer.Option(0, "--seed", help="Sampling seed.")
METRICS = typer.Option(None, "--metrics", "-m", help="Comma-separated metrics [default: eval.metrics, else all].")
DEVICE = typer.Option(None, "--device", help="cpu or cuda:N (default: GPU if available).")
BASE_MODEL = typer.Option(None, "--base-model", parser=base_model_flag.GIVEN, help=base_model_flag.HELP)
OVERWRITE = typer.Option(False, "--overwrite", help="Allow a non-empty --out: the files this command writes there "
                         "are replaced, other files are left alone.")
THINKING = typer.Option(None, "--thinking/--no-thinking",
                        help="Thinking mode of hybrid templates (default: the run's, else the template's); "
                             "with a template that has none it changes nothing, and a notice says so.")


@base_model_flag.names_the_flag
def eval_command(
    model_or_run: str = typer.Argument(..., parser=empty_refused("MODEL_OR_RUN", A_MODEL_OR_RUN),
                                       help="Model directory, tiny preset, hub id, or a dsft run directory (or its "
                                            "final/ or one of its checkpoints)."),
    data: str = typer.Option(..., "--data", parser=empty_refused("--data", SOME_DATA),
                             help="Eval data (any format dsft reads); the last assistant turn is the reference."),
    out: Path = typer.Option(..., "--out", help="Directory for predictions.jsonl and metrics.json (new or empty; "
                             "see --overwrite)."),
    max_new_tokens: Optional[int] = MAX_NEW_TOKENS, batch_size: Optional[int] = BATCH_SIZE,
    limit: Optional[int] = LIMIT, template: Optional[str] = TEMPLATE, temperature: Optional[float] = TEMPERATURE,
    top_p: Optional[float] = TOP_P, seed: int = SEED, metrics: Optional[str] = METRICS,
    device: Optional[str] = DEVICE, thinking: Optional[bool] = THINKING, base_model: Optional[str] = BASE_MODEL,
    config: Optional[Path] = CONFIG, overwrite: bool = OVERWRITE,
) -> None:
    """Generate answers with the model's own template and score them (LoRA runs: adapter not merged)."""
    from dsft.disk import check_fresh_output_dir, output_dir, refused_output_removed, removed_when_stopped
    from dsft.eval.evaluate import evaluate_model
    from dsft.models.loading import check_device
    from dsft.templates.registry import check_template_name

    # Stopped: no half-written predictions left. Refused (data with no usable record is found once --out exists):
    # no empty --out.
    with removed_when_stopped(out), refused_output_removed(out):
        check_fresh_output_dir(out, overwrite)  # every input is checked before --out is created
        check_inputs(data, [model_or_run], base_model)  # before a model loads
        if template is not None:
            check_template_name(template, "--template")
        defaults = eval_defaults(model_or_run, config)
        wanted = _metrics(defaults, metrics)
        options = _options(defaults, max_new_tokens, batch_size, temperature, top_p, seed)
        check_generation_room([model_or_run], max_new_tokens, base_model)
        if device is not None:  # imports torch: after every check that does not
            check_device(device)
        say_skipped_data(data)
        output_dir(out)
        result = evaluate_model(model_or_run, data, out, options, limit=limit, template=template, metrics=wanted,
                                device=device, thinking=thinking, base_model=base_model,
                                data_config=config_data(config))
    say_unused_thinking(result["evaluated"]["template"], thinking)
    print_metrics_table(result, f"eval: {model_or_run}")
    gen = result["generation"]
    typer.echo(f"{gen['generated_tokens']} tokens in {gen['elapsed_s']:.1f}s ({gen['tokens_per_s']:.1f} tok/s); "
               f"wrote {out / 'predictions.jsonl'} and {out / 'metrics.json'}")


@base_model_flag.names_the_flag
def compare_command(
    tuned: str = typer.Option(..., "--tuned", parser=empty_refused("--tuned", A_MODEL_OR_RUN),
                              help="The tuned run directory (its final/ or one of its checkpoints; "
                              "or a model)."),
    data: str = typer.Option(..., "--data", parser=empty_refused("--data", SOME_DATA),
                             help="Eval data; the same prompts go through both models."),
    out: Path = typer.Option(..., "--out", help="Directory for the reports and both models' predictions (new or "
                             "empty; see --overwrite)."),
    base: Optional[str] = typer.Option(None, "--base", parser=empty_refused("--base", A_MODEL_OR_RUN),
                                       help="Base model (default: the run's base model)."),
    max_new_tokens: Optional[int] = MAX_NEW_TOKENS, batch_size: Optional[int] = BATCH_SIZE,
    limit: Optional[int] = LIMIT, template: Optional[str] = TEMPLATE, temperature: Optional[float] = TEMPERATURE,
    top_p: Optional[float] = TOP_P, seed: int = SEED, metrics: Optional[str] = METRICS,
    device: Optional[str] = DEVICE, thinking: Optional[bool] = THINKING,
    samples: int = typer.Option(5, "--samples", min=0, help="Side-by-side answers shown in the report."),
    base_model: Optional[str] = BASE_MODEL, config: Optional[Path] = CONFIG, overwrite: bool = OVERWRITE,
) -> None:
    """Base vs tuned on the same prompts: report.md and a self-contained report.html with deltas."""
    from rich.console import Console

    from dsft.disk import check_fresh_output_dir, output_dir, refused_output_removed, removed_when_stopped
    from dsft.eval.compare import compare_models, tuned_run_of
    from dsft.export.source import check_source
    from dsft.eval.report import comparison_table, skipped_lines
    from dsft.models.loading import check_device
    from dsft.templates.registry import check_template_name

    # Stopped: no half-written report left. Refused (data with no usable record is found once --out exists):
    # no empty --out.
    with removed_when_stopped(out), refused_output_removed(out):
        check_fresh_output_dir(out, overwrite)  # every input is checked before --out is created
        check_inputs(data, [tuned], base_model)  # before either model loads
        if base:
            check_source(base)
        else:  # the base side is the run's base model: found, or --base-model, as the adapter's is
            tuned_run_of(tuned).check_base_model(base_model)
        if template is not None:
            check_template_name(template, "--template")
        defaults = eval_defaults(tuned, config)
        wanted = _metrics(defaults, metrics)
        options = _options(defaults, max_new_tokens, batch_size, temperature, top_p, seed)
        check_generation_room([tuned], max_new_tokens, base_model)
        check_generation_room([base] if base else [], max_new_tokens)
        if device is not None:  # imports torch: after every check that does not
            check_device(device)
        say_skipped_data(data)
        output_dir(out)
        result = compare_models(base, tuned, data, out, options, limit=limit, template=template, metrics=wanted,
                                sample_count=samples, device=device, thinking=thinking,
                                data_config=config_data(config), base_model=base_model)
    say_unused_thinking(result["template"], thinking)
    Console().print(comparison_table(result))
    for line in skipped_lines(result["tuned"]):  # the same records on both sides
        typer.echo(line)
    typer.echo(f"wrote {result['report_md']} and {result['report_html']}")


def register(app: typer.Typer) -> None:
    """Add ``metrics``, ``eval`` and ``compare`` to the root app."""
    app.command("metrics")(metrics_command)
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
