"""``dsft export RUN_OR_MODEL --out DIR [--format hf|adapter|gguf|ollama] [--dtype ...] [--no-verify] [--config YAML]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dsft.cli import base_model as base_model_flag
from dsft.cli.empty_paths import A_MODEL_OR_RUN, empty_refused
from dsft.cli.keywords import keyword
from dsft.dtype_names import dtype_name

if TYPE_CHECKING:
    from dsft.config import ExportConfig


@base_model_flag.names_the_flag
def export(
    run_or_model: str = typer.Argument(..., parser=empty_refused("RUN_OR_MODEL", A_MODEL_OR_RUN),
                                       help="Run directory (with run.json; or its final/ or one of its "
                                            "checkpoints), model directory or tiny preset."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (new or empty; see --overwrite)."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="hf (merged safetensors), adapter (PEFT only), gguf, ollama [default: export.format]."
    ),
    dtype: str | None = typer.Option(
        None, "--dtype", help="auto (the base's dtype), float32, float16, bfloat16 (or fp32, fp16, bf16), or q8_0 "
        "(gguf/ollama) "
        "[default: export.dtype].",
    ),
    verify: bool | None = typer.Option(
        None, "--verify/--no-verify", help="Reload the export and compare logits [default: export.verify]."
    ),
    tolerance: str | None = typer.Option(
        None, "--tolerance", help="Pass criterion of verification: X (max |logit difference|), or key=value pairs "
        "'diff=X|P%,outliers=P%,top1=P%,kl=X' (see docs/export.md) [default: export.tolerance, else per dtype].",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow a non-empty --out (an earlier export's too): the files "
                                   "the export writes are replaced, other files are left alone."),
    max_shard_size: str | None = typer.Option(
        None, "--max-shard-size", help="Safetensors shard size (hf) [default: export.max_shard_size]."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name for `ollama create` (ollama)."),
    base_model: str | None = typer.Option(None, "--base-model", parser=base_model_flag.GIVEN,
                                          help=base_model_flag.HELP),
    config: Path | None = typer.Option(
        None, "--config", help="YAML whose `export:` section gives the defaults [default: a run directory's own "
        "config.yaml, else the schema's defaults].",
    ),
) -> None:
    """Export a trained model: merged HF checkpoint, adapter, GGUF (llama.cpp) or Ollama, verified by default.

    Options not given on the command line come from the `export:` section of --config, or of the run's own
    config.yaml when exporting a run directory.
    """
    from rich.console import Console

    from dsft.errors import DsftError
    from dsft.export.bounds import parse_tolerance
    from dsft.export.options import EXPORT_DTYPES, EXPORT_FORMATS, check_export_options, dtype_fits
    from dsft.export.source import check_out_is_not_the_source, check_source

    fmt, dtype = keyword(fmt, EXPORT_FORMATS), keyword(dtype_name(dtype), EXPORT_DTYPES)  # GGUF, Q8_0, bf16
    if verify is False and tolerance is not None:
        raise DsftError("--tolerance applies to the verification that --no-verify turns off; drop one of them")
    defaults = export_defaults(run_or_model, config)
    if tolerance is None and defaults.tolerance is not None:
        parse_tolerance(defaults.tolerance, name="export.tolerance")  # named as the config key it came from
    chosen = fmt or defaults.format
    if dtype is None and fmt is not None and not dtype_fits(fmt, defaults.dtype):
        dtype = "auto"  # the section's dtype goes with its format (q8_0 with ollama): not with another --format
    options = {"fmt": chosen, "dtype": dtype or defaults.dtype,
               "tolerance": defaults.tolerance if tolerance is None else tolerance,
               "max_shard_size": max_shard_size or defaults.max_shard_size}
    check_export_options(**options, dtype_source="--dtype" if dtype else "export.dtype", name=name)
    check_out_is_not_the_source(run_or_model, out)  # paths only: before a run's base model is looked for
    check_source(run_or_model, base_model)  # the options first, then the model (and --base-model) they apply to
    # torch, transformers and peft load only once the options and the model are known good.
    from dsft.export.api import export as run_export

    console = Console(highlight=False, soft_wrap=True)
    result = run_export(
        run_or_model, out_dir=out, verify=defaults.verify if verify is None else verify, overwrite=overwrite, name=name,
        base_model=base_model, echo=lambda line: console.print(line, markup=False), **options,
    )
    status = "verified" if result.comparison is not None else "not verified"
    console.print(f"[bold green]done[/] {result.format} export in {result.out_dir} ({status}): "
                  f"{', '.join(result.files)}")


def export_defaults(run_or_model: str, config: Path | None) -> ExportConfig:
    """The `export:` section that supplies defaults: --config's, else a run directory's config.yaml's."""
    from dsft.config import ExportConfig, load_config

    if config is not None:
        return load_config(config).export
    from dsft.training.rundir import RunDir

    run = RunDir.find(run_or_model)  # a run directory, its final/ or one of its checkpoints
    if run is not None and run.config_path.is_file():
        return run.config.export
    return ExportConfig()


def register(app: typer.Typer) -> None:
    """Add ``dsft export``."""
    app.command("export")(export)
