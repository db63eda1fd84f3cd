"""``dsft sweep CONFIG --grid KEY=v1,v2 ... --out DIR``: one run per trial, the best chosen on validation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dsft.cli.keywords import keyword

if TYPE_CHECKING:  # pydantic: a type only, so `dsft --help` stays instant
    from dsft.config import DsftConfig


def sweep(
    ctx: typer.Context,
    config: Path | None = typer.Argument(None, help="YAML config every trial starts from (not with --collect)."),
    out: Path = typer.Option(..., "--out", help="Sweep directory: data/, trial-NNN/ run directories, the report (new or empty; "
                             "an earlier sweep is read with --collect, never replaced)."),
    grid: list[str] = typer.Option([], "--grid", help="Values to try: --grid train.lr=1e-5,3e-5 (repeatable)."),
    range_: list[str] = typer.Option(
        [], "--range", help="A range for random/TPE: --range train.lr=log:1e-5:1e-3 (float|log|int; repeatable)."
    ),
    sampler: str = typer.Option("grid", "--sampler", help="grid (every combination), random or tpe (Optuna)."),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Trial budget for random/tpe."),
    prune: bool = typer.Option(False, "--prune", help="random/tpe: stop a trial whose validation value is worse "
                               "than the median of earlier trials at the same step."),
    launch: str = typer.Option("local", "--launch", help="local (trials one after another here), script "
                               "(launch.sh, one dsft train per trial) or slurm (a job array)."),
    collect: bool = typer.Option(False, "--collect", help="Read the trials of a launched sweep and write the report (with --out only)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped sweep in --out (the command that started "
                                "it): ended trials kept, the stopped one from its checkpoint, then the rest."),
    set_: list[str] = typer.Option([], "--set", help="Override a key for every trial (repeatable)."),
    preset: str | None = typer.Option(None, "--preset", help="Size preset for every trial, over the file (each of "
                                      "its values replaced is named) and under --set (see `dsft config preset`)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random/TPE sampler."),
) -> None:
    """Train one run per trial of a search space and choose the best by eval.metric on validation data."""
    from rich.console import Console

    from dsft.errors import ConfigError

    if ctx.args:  # words no argument reads: mostly a --grid list the shell split at a space (context_settings)
        from dsft.sweep.space import extra_words_message

        raise ConfigError(extra_words_message(grid, ctx.args))
    if collect and resume:  # --collect only reads a sweep back: a --resume beside it would be ignored, silently
        raise ConfigError("dsft sweep: --collect reads a launched sweep's trials back and --resume continues a "
                          "stopped sweep here; give one of them")
    if collect:
        _refuse_beside_collect(ctx)
    from dsft.sweep.request import LAUNCHES, SAMPLERS, SweepRequest, check_request
    from dsft.sweep.space import build_space

    sampler, launch = keyword(sampler, SAMPLERS), keyword(launch, LAUNCHES)
    console = Console()
    if collect:
        from dsft.sweep.runner import collect_sweep

        result = collect_sweep(out)
    else:
        if config is None:
            raise ConfigError("dsft sweep: give the CONFIG every trial starts from (or --collect --out DIR)")
        from dsft.plan.preflight import preflight
        from dsft.training.environment import Environment

        environment = Environment.this_machine()

        def check(cfg: DsftConfig) -> None:
            # Local trials train in this process, as `dsft train` would (launched ones: elsewhere).
            preflight(cfg, environment, str(config), set_, trains_here="dsft sweep" if launch == "local" else None)

        request = SweepRequest(config, set_, preset, build_space(grid, range_), out, sampler, trials, prune,
                               launch, seed, progress=False, check=check, resume=resume)
        check_request(request)
        from dsft.config.loader import preset_notice

        if (notice := preset_notice(config, preset, [*set_, *grid, *range_])) is not None:
            typer.echo(notice, err=True)  # the file's own values the preset replaced, in every trial
        from dsft.sweep.runner import run_sweep  # torch: only once the request and every trial config are good

        result = run_sweep(request)
        if launch != "local":
            console.print(f"wrote {len(result.trials)} trial configs; run {out / 'launch.sh'} or "
                          f"sbatch {out / 'sweep.sbatch'}, then: dsft sweep --collect --out {out}", markup=False)
            return
    best = next((t for t in result.trials if t.number == result.best), None)
    for trial in result.trials:
        value = "-" if trial.value is None else f"{trial.value:.6g}"
        console.print(f"{trial.name}  {trial.params}  {trial.status}  {result.metric}={value}", markup=False,
                      emoji=False)
    if best is None:
        console.print("no trial logged the selection metric yet", markup=False)
    else:
        console.print(f"best: {best.name} {best.params} {result.metric}={best.value:.6g} -> {best.run_dir}",
                      markup=False)
    console.print(f"report: {out / 'report.md'}", markup=False)


# What a sweep that starts here is asked; --collect reads the sweep in --out back as it was recorded, so any of
# these beside it would be ignored, silently. The parameter names as typer gives them to click, then as typed.
_NOT_READ_BY_COLLECT = {"config": "CONFIG", "grid": "--grid", "range_": "--range", "set_": "--set",
                        "preset": "--preset", "sampler": "--sampler", "trials": "--trials", "prune": "--prune",
                        "seed": "--seed", "launch": "--launch"}


def _refuse_beside_collect(ctx: typer.Context) -> None:
    """--collect with CONFIG or a flag that only a sweep starting here reads: refused, naming those given (on the
    command line, whatever their value: ``--sampler grid`` beside --collect is ignored as much as ``--sampler tpe``)."""
    from dsft.errors import ConfigError

    # By the enum's name: typer carries its own copy of click, whose ParameterSource is not click's.
    given = [flag for name, flag in _NOT_READ_BY_COLLECT.items()
             if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]
    if given:
        raise ConfigError(f"dsft sweep: {', '.join(given)}: not read by --collect, which reads the sweep in --out back "
                          "as it was recorded (sweep.json, each trial's run); give them to start a new sweep, without "
                          "--collect")


def register(app: typer.Typer) -> None:
    # Extra words reach the command (ctx.args), which names the split --grid list they most often are, instead of
    # click's 'Got unexpected extra argument(s)'.
    app.command("sweep", context_settings={"allow_extra_args": True})(sweep)
