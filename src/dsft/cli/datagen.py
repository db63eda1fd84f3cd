"""``dsft data augment`` and ``dsft data distill``: generate training data, accounting for every record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dsft.cli.empty_paths import SOME_DATA, empty_refused

# The output-directory rule (README, "Output directories") as --overwrite says it.
OVERWRITE_HELP = ("Write into a non-empty --out that holds no earlier output of this command, replacing only the "
                  "files it writes (others stay).")

def augment_command(
    inputs: list[str] = typer.Argument(None, parser=empty_refused("INPUTS", SOME_DATA),
                                       help="Seed data files, directories or globs (may be empty with templates)."),
    out: Path = typer.Option(..., "--out", help="Directory for augmented.jsonl, removed.jsonl and augment_report.json "
                             "(new, empty, or an earlier augment output: a rerun asks only what its cache lacks)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config with a data.augment section."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set data.augment.synonym_copies=2 (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Fill table templates, add synonym / paraphrase / back-translated copies; write the originals + copies."""
    from dsft.config import load_config
    from dsft.data.augment import augment_files, check_augment_request
    from dsft.disk import refused_output_removed

    cfg = load_config(config, set_, set_flags=set_)
    check_augment_request(cfg, list(inputs or cfg.data.train), out, overwrite)  # a refusal comes with no warning
    _say_skipped_files([(None, pattern) for pattern in inputs] if inputs
                       else [("data.train", pattern) for pattern in cfg.data.train])
    with refused_output_removed(out):  # an endpoint that does not answer is found once --out exists
        report = augment_files(cfg, list(inputs or cfg.data.train), out, overwrite=overwrite)
    _print_ledger("dsft data augment", report, out / "augment_report.json")


def distill_command(
    inputs: list[str] = typer.Argument(..., parser=empty_refused("INPUTS", SOME_DATA),
                                       help="Question files, directories or globs (any format with a question)."),
    out: Path = typer.Option(..., "--out", help="Directory for distilled.jsonl, removed.jsonl and distill_report.json "
                             "(new, empty, or an earlier distill output: a rerun resumes from its cache)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config with a data.distill section."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set data.distill.samples=4 (repeatable)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Teacher endpoint (data.distill.endpoint.base_url)."),
    model: str | None = typer.Option(None, "--model", help="Teacher model name (data.distill.endpoint.model)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Ask a teacher model every question; keep reasoning + answer as messages records (resumable)."""
    from dsft.config import load_config
    from dsft.data.distill import check_distill_request, distill_files
    from dsft.disk import refused_output_removed
    from dsft.eval.answer_check import answer_checker

    # The options that set a key, each named as typed where the key's value is wrong (--base-url api.deepseek.com);
    # their values are text, quoted so that YAML keeps them so (--model yes was the boolean true, --model 1.5 a number).
    flags = [(f"data.distill.endpoint.{key}={json.dumps(value)}", f"{flag} {value if value.strip() else repr(value)}")
             for key, flag, value in (("base_url", "--base-url", base_url), ("model", "--model", model))
             if value is not None]
    cfg = load_config(config, set_, set_flags=set_, flags=flags)
    settings = cfg.data.distill
    check_distill_request(settings, list(inputs), out, overwrite)  # a refusal comes with no warning before it
    _say_skipped_files([(None, pattern) for pattern in inputs])
    with refused_output_removed(out):  # an endpoint that does not answer is found once --out exists
        report = distill_files(settings, list(inputs), out, answer_checker(settings.verify, settings.f1_min),
                               overwrite=overwrite)
    _print_ledger("dsft data distill", report, out / "distill_report.json")


def _say_skipped_files(named: list[tuple[str | None, str]]) -> None:
    """Warn of the files of unread types in each input directory, as `dsft data prepare` does."""
    from dsft.data.input_checks import directory_skip_warnings

    for warning in directory_skip_warnings(named):  # named alone, such a file is refused
        typer.echo(warning, err=True)


def print_rejection_notice(report: dict[str, Any], out: Path, console: Any) -> None:
    """How many records a data command (prepare, augment, distill) rejected, the most frequent reasons and where
    each one is, as dsft train says it (nothing when none was)."""
    from dsft.data.report import rejection_notice

    if notice := rejection_notice(report, out):
        console.print(notice, markup=False, highlight=False, soft_wrap=True)  # reasons hold [...]: not markup


def _print_ledger(title: str, report: dict[str, Any], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("", "records", title=title)
    table.add_row("read", str(report["read"]))
    for step, count in report["added"].items():
        table.add_row(f"added: {step}", str(count))
    table.add_row("rejected", str(report["rejected"]))
    for step, count in report["removed"].items():
        table.add_row(f"removed: {step}", str(count))
    table.add_row("kept", str(report["kept"]), end_section=True)
    for reason, count in report.get("skipped", {}).items():
        table.add_row(f"skipped: {reason}", str(count))
    console = Console()
    console.print(table)
    print_rejection_notice(report, path.parent, console)  # why, as dsft data prepare says it
    console.print(f"wrote {path.parent}; ledger in {path}")


def add_commands(data_app: typer.Typer) -> None:
    """Add the generation commands to the ``data`` group."""
    data_app.command("augment")(augment_command)
    data_app.command("distill")(distill_command)
