"""``dsft doctor``: check this machine for fine-tuning and say how to fix what is missing."""

from __future__ import annotations

import json
import sys

import typer

VERDICT_STYLE = {"ok": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with a `checks` list."),
) -> None:
    """Check Python, torch, CUDA, GPUs, NCCL, optional GPU libraries, versions and disk; exit 1 if any check fails."""
    from dsft.doctor import run_doctor

    report = run_doctor()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        with_fix = any(check.fix for check in report.checks)
        table = Table("check", "verdict", "detail", *(["fix"] if with_fix else []), title="dsft doctor")
        for check in report.checks:
            style = VERDICT_STYLE[check.verdict]
            row = [check.name, f"[{style}]{check.verdict}[/]", check.detail]
            table.add_row(*row, *([check.fix or ""] if with_fix else []))
        console.print(table)
        for line in report.can:
            console.print(f"[green]can[/]     {line}", highlight=False)
        for line in report.cannot:
            console.print(f"[yellow]cannot[/]  {line}", highlight=False)
    if not report.ok:
        # sys.exit rather than typer.Exit: the root app runs click with standalone_mode=False, where an
        # Exit's code is returned rather than used as the process status.
        sys.exit(1)


def register(app: typer.Typer) -> None:
    """Add ``dsft doctor`` to the root app."""
    app.command("doctor")(doctor)
