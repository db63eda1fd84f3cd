"""``dsft bench train [--model PRESET] [--steps N] [--seq-len L] [--compare trl-expert,trl,seed] --out FILE.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dsft.cli.empty_paths import A_MODEL_OR_RUN, empty_refused
from dsft.cli.keywords import keyword
from dsft.disk import check_fresh_output_dir, check_output_dir, replaced_atomically
from dsft.errors import DsftError
from dsft.whole_numbers import whole_number

bench_app = typer.Typer(help="Benchmarks, measured on this machine in one run.", no_args_is_help=True)


def _table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    settings = report["settings"]
    options = settings.get("dsft_options") or []
    table = Table(title=f"{settings['model']} ({settings['method']}), seq {settings['seq_len']}, "
                        f"{settings['steps']} timed steps, {settings.get('lengths', 'reasoning')} lengths, "
                        f"{report['machine']['device']}"
                        + (f"; dsft with {', '.join(options)}" if options else ""))
    for column in ("system", "supervised tok/s", "tok/s", "peak memory", "MFU", "final loss",
                   "held-out loss", "dsft speed-up", "dsft memory"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for name, row in report["systems"].items():
        if "failed" in row:
            table.add_row(name, "failed: " + row["failed"].splitlines()[0], *["-"] * 7)
            continue
        speed = report["ratios"].get(f"vs_{name}")
        memory = report["memory_ratios"].get(f"vs_{name}")
        table.add_row(
            name, f"{row['supervised_tokens_per_s']:,.0f}", f"{row['tokens_per_s']:,.0f}",
            f"{row['peak_memory_bytes'] / 2**20:,.0f} MiB", f"{row['mfu']:.1%}", f"{row['final_loss']:.3f}",
            f"{row['held_out_loss']:.3f}" if "held_out_loss" in row else "-",
            f"{speed:.2f}x" if speed else "-", f"{memory:.2f}x" if memory else "-",
        )
    return table


def train(
    model: str = typer.Option("tiny-deepseek-v3", "--model", parser=empty_refused("--model", A_MODEL_OR_RUN),
                              help="Tiny preset, local directory or hub id."),
    steps: int = typer.Option(8, "--steps", help="Timed optimizer steps per system (one warm-up step is added)."),
    seq_len: int = typer.Option(2048, "--seq-len", help="Maximum tokens per example (dsft: per packed row)."),
    compare: str = typer.Option(
        "trl-expert,trl,seed", "--compare",
        help="Systems to compare with dsft: trl-expert (TRL configured for speed), trl-expert-varlen (the same on a "
        "varlen flash kernel where flash-attn is absent), trl (TRL defaults), seed."),
    out: Path = typer.Option(..., "--out", help="Where to write the JSON report (a new file, or an earlier bench "
                             "report, which a rerun replaces; see --overwrite)."),
    examples_per_step: int = typer.Option(8, "--examples-per-step", help="Conversations per optimizer step."),
    micro_batch_size: int = typer.Option(
        1, "--micro-batch-size", help="Packed rows per forward for dsft and trl-expert (train.micro_batch_size); "
        "a step holds at least one micro-batch."),
    method: str = typer.Option("lora", "--method", help="lora (dsft's default adapter) or full."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads per system (default: torch's)."),
    loss_chunk_size: str | None = typer.Option(
        None, "--loss-chunk-size", help="dsft's lm_head + CE chunk: rows or auto (default: train.loss_chunk_size's)."
    ),
    dsft_option: list[str] = typer.Option(
        [], "--dsft-option", help="Measure dsft with an optional acceleration on (repeatable): compile (the "
        "whole model), compile_layers (each decoder layer), gradient_checkpointing, offload_activations (implies "
        "checkpointing), liger (CUDA).",
    ),
    loss_dtype: str = typer.Option(
        "auto", "--loss-dtype", help="dsft's lm_head matmul dtype: auto, fp32 or bf16 (train.loss_dtype)."),
    precision: str = typer.Option(
        "auto", "--precision", help="What every system computes in: auto (fp32 on CPU, bf16 on GPU), fp32, or bf16 "
        "(on CPU: where it has bf16 matrix instructions), as train.precision."),
    lengths: str = typer.Option(
        "short", "--lengths", help="Synthetic length mix: short (short answers, long-tailed prompts) or "
        "reasoning (long <think> reasoning)."),
    length_scale: float = typer.Option(1.0, "--length-scale", hidden=True, help="Shrink lengths (smoke tests)."),
    profile: Path | None = typer.Option(
        None, "--profile", help="Also profile each system's timed steps into DIR/<system>.txt (device busy share, "
        "time by kernel kind, top kernels); the profiled speed figures are slower than unprofiled ones. A new or "
        "empty DIR, the profile of the earlier report --out replaces, or any other with --overwrite."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that is no bench "
                                   "report, and write into a non-empty --profile DIR."),
) -> None:
    """Train the same model on the same synthetic conversations with dsft, TRL and the seeds' recipe."""
    from rich.console import Console

    from dsft.training.bench.settings import (
        LENGTH_MIXES, LOSS_DTYPE_NAMES, PRECISIONS, check_bench_settings, parse_systems,
    )

    method, lengths = keyword(method, ("lora", "full")), keyword(lengths, LENGTH_MIXES)
    loss_dtype, precision = keyword(loss_dtype, LOSS_DTYPE_NAMES), keyword(precision, PRECISIONS)
    if method not in ("lora", "full"):
        raise DsftError(f"bench --method: expected lora or full, got {method!r}")
    if threads is not None and threads < 1:  # torch.set_num_threads failed on it, after a model had been built
        raise DsftError(f"bench --threads: must be >= 1, got {threads} (leave it out for torch's default)")
    # Before the benchmark: a measurement is never lost to a bad --out or --profile.
    check_report_file(out, overwrite)
    if profile is not None:
        check_profile_dir(profile, out, overwrite)
    systems = parse_systems(compare)
    check_bench_settings(steps=steps, seq_len=seq_len, examples_per_step=examples_per_step,
                         micro_batch_size=micro_batch_size, compare=systems, dsft_options=tuple(dsft_option),
                         lengths=lengths, loss_dtype=loss_dtype, precision=precision, length_scale=length_scale)
    chunk: int | str | None = loss_chunk_size
    if loss_chunk_size is not None and loss_chunk_size != "auto":
        chunk = whole_number(loss_chunk_size)  # as typer reads a number flag: not a full-width ８
        if chunk is None or chunk < 1:
            raise DsftError(f"bench --loss-chunk-size: expected a positive integer or auto, got {loss_chunk_size!r}")
    from dsft.training.bench.runner import run_bench  # torch: after the flags that need none are checked

    console = Console()
    report = run_bench(model=model, steps=steps, seq_len=seq_len, compare=systems,
                       examples_per_step=examples_per_step, method=method, threads=threads,
                       length_scale=length_scale, loss_chunk_size=chunk, dsft_options=tuple(dsft_option),
                       lengths=lengths, loss_dtype=loss_dtype, profile_dir=str(profile) if profile else None,
                       micro_batch_size=micro_batch_size, precision=precision,
                       progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    console.print(_table(report))
    write_report(out, report)
    console.print(f"report: {out}")


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Write the bench report to ``out`` in one rename (an earlier report there stays whole until then). A write
    that fails (a full disk) prints the report's JSON on stdout, so the measurement is not lost, and raises a
    :class:`DsftError` saying so."""
    text = json.dumps(report, indent=2)
    existed = out.is_file()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(out) as handle:
            handle.write(text)
    except OSError as exc:
        typer.echo(text)
        kept = "the earlier report there is unchanged" if existed else "no file was written there"
        raise DsftError(f"--out {out}: the report could not be written ({exc.strerror or exc}); {kept}, and the "
                        "report's JSON is printed above on stdout: save it from there") from None


def _earlier_report(out: Path) -> dict[str, Any] | None:
    """The bench report already at ``out``, or None when there is none (or the file is something else)."""
    try:
        earlier = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return earlier if isinstance(earlier, dict) and {"settings", "systems"} <= set(earlier) else None


def check_report_file(out: Path, overwrite: bool) -> None:
    """The output rule for a report file (README, "Output directories"): a new file, or an earlier bench report
    (reruns of a benchmark replace their own report, as benchmarks/bench_gpu_7b.sh does part by part); another
    existing file only with ``overwrite``; a directory, or a parent that cannot be created, never."""
    if out.is_dir():
        raise DsftError(f"--out {out}: is a directory; name the report file, e.g. {out / 'bench.json'}")
    check_output_dir(out.parent, f"--out {out}: its folder")  # tried, not only os.access: root writes no /proc/x.json
    if not out.exists() or overwrite:
        return
    if _earlier_report(out) is None:
        raise DsftError(f"--out {out}: exists and is no bench report; choose a new file name or pass --overwrite")


def check_profile_dir(profile: Path, out: Path, overwrite: bool) -> None:
    """The output rule for ``--profile DIR`` (README, "Output directories"): a new or empty directory, or, with
    ``overwrite``, any directory (only the ``<system>.txt`` files of this run are replaced). The rerun exception
    follows the report's: when ``out`` is an earlier bench report that was profiled into this same directory,
    the rerun replaces that report and its profile together, without a flag (benchmarks/bench_gpu_7b.sh
    reruns its profile part into the same folder)."""
    earlier = _earlier_report(out) if out.is_file() else None
    profiled_into = (earlier or {}).get("settings", {}).get("profile_dir")
    if profiled_into and Path(profiled_into).resolve() == profile.resolve():
        check_output_dir(profile, "--profile")
        return
    check_fresh_output_dir(profile, overwrite, "--profile")


def register(app: typer.Typer) -> None:
    """Add ``dsft bench`` to the root app."""
    bench_app.command("train")(train)
    app.add_typer(bench_app, name="bench")
