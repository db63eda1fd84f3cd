"""``dsft export RUN_OR_MODEL --format hf|adapter|gguf|ollama --out DIR [--dtype ...] [--no-verify]``."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    run_or_model: str = typer.Argument(..., help="Run directory (with run.json), model directory or tiny preset."),
    fmt: str = typer.Option(..., "--format", "-f", help="hf (merged safetensors), adapter (PEFT only), gguf, ollama."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (created; must be empty)."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (the base's dtype), float32, float16, bfloat16, or q8_0 (gguf/ollama)."
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Reload the export and compare logits."),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="Max |logit difference| accepted (default depends on the dtype)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow a non-empty --out directory."),
    max_shard_size: str = typer.Option("5GB", "--max-shard-size", help="Safetensors shard size (hf)."),
    name: str | None = typer.Option(None, "--name", help="Model name for `ollama create` (ollama)."),
) -> None:
    """Export a trained model: merged HF checkpoint, adapter, GGUF (llama.cpp) or Ollama, verified by default."""
    from rich.console import Console

    from dsft.export.api import export as run_export

    console = Console(highlight=False, soft_wrap=True)
    result = run_export(run_or_model, fmt, out, dtype=dtype, verify=verify, tolerance=tolerance,
                        overwrite=overwrite, max_shard_size=max_shard_size, name=name, echo=lambda line: console.print(line, markup=False))
    status = "verified" if result.comparison is not None else "not verified"
    console.print(f"[bold green]done[/] {result.format} export in {result.out_dir} ({status}): "
                  f"{', '.join(result.files)}")


def register(app: typer.Typer) -> None:
    """Add ``dsft export``."""
    app.command("export")(export)
