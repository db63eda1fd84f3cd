"""``dsft train CONFIG --out RUN_DIR [--set k=v]... [--resume auto|PATH]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dsft.cli import stopping
from dsft.cli.empty_paths import empty_refused


def train(
    config: Path = typer.Argument(..., help="YAML config (see `dsft config show`)."),
    out: Path = typer.Option(..., "--out", help="Run directory (created; must not hold another run)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.lr=1e-4 (repeatable)."),
    resume: str | None = typer.Option(
        None, "--resume", parser=empty_refused("--resume", "auto or a checkpoint directory"),
        help="auto = newest complete checkpoint in the run directory, or a checkpoint path."
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Size preset (7b, 13b, 34b) applied over the file (each of its values replaced "
        "is named) and under --set; see `dsft config preset`.",
    ),
) -> None:
    """Fine-tune a model: prepare the data, train (SFT, DPO, ORPO, KTO or GRPO; LoRA, QLoRA or full), save the run."""
    stopping.restore()  # SIGTERM: finishes the step and saves a checkpoint (dsft.training.stop)
    from rich.console import Console

    from dsft.config import load_config
    from dsft.config.loader import preset_notice
    from dsft.data.input_checks import check_inputs, skipped_file_warnings
    from dsft.data.prepared_output import check_prepared_output
    from dsft.errors import DsftError
    from dsft.models.dropout import check_dropout_before_loading
    from dsft.models.resolve import check_model_files, check_model_name
    from dsft.models.skeleton import check_lora_targets
    from dsft.plan.preflight import preflight
    from dsft.training.environment import Environment
    from dsft.training.ranks import is_main_process
    from dsft.training.resume_layout import check_resume_layout_before_loading
    from dsft.training.resume_steps import check_resume_steps
    from dsft.training.rundir import RunDir

    cfg = load_config(config, set_, preset=preset, set_flags=set_)
    env = Environment.this_machine()
    rewards = preflight(cfg, env, str(config), set_, trains_here="dsft train")  # before any data or model is read
    check_inputs(cfg)
    try:
        check_model_name(cfg.model.name_or_path)
        check_model_files(cfg.model.name_or_path)  # a local directory's weights and tokenizer, before the data
    except DsftError as exc:
        raise DsftError(f"model.name_or_path: {exc}") from None
    check_lora_targets(cfg)  # on the weightless skeleton, as config show checks it: before the training stack loads
    check_dropout_before_loading(cfg)  # on the model's config, as config show checks it
    if not cfg.data.prepared_dir:  # the data is prepared into RUN/data, never over or inside the inputs
        check_prepared_output(cfg, out / "data", None, f"--out {out}")
    RunDir(out).check(cfg, resuming=resume is not None)  # another run there, a refused change on --resume
    check_resume_path(resume)
    check_resume_steps(resume, out, cfg.train)  # a schedule the checkpoint is already past
    check_resume_layout_before_loading(resume, RunDir(out).checkpoint_root, cfg.train, env.world_size or 1,
                                       env.has_cuda())  # optimizer state this run cannot read
    if is_main_process() and (notice := preset_notice(config, preset, set_)) is not None:
        typer.echo(notice, err=True)  # the file's own values the preset replaced
    if not cfg.data.prepared_dir and is_main_process():  # the raw inputs are read (and prepared) by this run
        for warning in skipped_file_warnings(cfg):  # after every refusal, so one comes alone
            typer.echo(warning, err=True)  # named alone, such a file is refused
    # torch, transformers and peft load only once the config, data paths, model name and --out are known good.
    from dsft.eval.callbacks import training_eval_callbacks
    from dsft.training.run import run_training

    reward_funcs = list(rewards.functions) or None  # GRPO's, as preflight built them; weights: in the config
    result = run_training(cfg, out, resume=resume, extra_callbacks=training_eval_callbacks(cfg, out),
                          reward_funcs=reward_funcs, lora_targets_checked=True,
                          inputs_checked=True)  # both checked above
    if is_main_process():  # every process of a launched job returns here; the job's summary is said once
        console = Console()
        for line in summary_lines(result):
            console.print(line)
    if result.stopped_by_signal is not None:  # not finished: `dsft train ... && dsft export ...` must not go on
        raise typer.Exit(128 + result.stopped_by_signal)  # 130 for Ctrl-C, 143 for SIGTERM, as every command


def summary_lines(result: Any) -> list[str]:
    """What a finished (or stopped) run prints: steps, validation loss, where its files are; a stopped run says
    so and how to continue, rather than 'done'."""
    import signal

    if result.stopped_by_signal is not None:
        name = "Ctrl-C" if result.stopped_by_signal == signal.SIGINT else signal.Signals(result.stopped_by_signal).name
        lines = [f"[bold yellow]stopped[/] ({name}) after {result.global_step} steps in {result.elapsed_s:.1f}s, "
                 "checkpoint saved; to continue, run the same command with --resume auto"]
    else:
        lines = [f"[bold green]done[/] {result.global_step} steps in {result.elapsed_s:.1f}s"]
    if result.first_eval_loss is not None:
        lines.append(f"validation loss {result.first_eval_loss:.4f} -> {result.last_eval_loss:.4f} "
                     f"(best {result.best_eval_loss:.4f})")
    lines.append(f"run directory: {result.run_dir}\nfinal weights: {result.final_dir}")
    return lines


def check_resume_path(resume: str | None) -> None:
    """Refuse ``--resume PATH`` that is no checkpoint a run can resume from, before the model loads (its files
    are verified against the checkpoint's manifest when the run opens it; ``auto`` is resolved there too)."""
    from dsft.errors import DsftError
    from dsft.training.checkpointing import missing_state_files
    from dsft.training.rundir import RunDir

    if resume is None or resume == "auto":
        return
    path = Path(resume)
    expected = ("give a checkpoint directory of a run (RUN/checkpoints/checkpoint-N), or continue a run directory's "
                "newest checkpoint with --out RUN --resume auto")
    if path.is_file():  # e.g. a checkpoint's trainer_state.json or a run's run.json, picked by tab completion
        raise DsftError(f"--resume {resume}: a file, not a checkpoint directory; {expected}{_holder_hint(path)}")
    if not path.is_dir():
        raise DsftError(f"--resume {resume}: no such directory; {expected}")
    if RunDir.is_run(path):
        raise DsftError(f"--resume {resume}: a run directory, not a checkpoint; pass --out {resume} --resume auto "
                        "to continue its newest checkpoint")
    problems = missing_state_files(path)
    if problems:
        raise DsftError(f"--resume {resume}: not a checkpoint a run can resume from", problems)


def _holder_hint(file: Path) -> str:
    """What to pass instead of ``file`` when the directory it is in is a checkpoint or a run ('' otherwise)."""
    from dsft.training.checkpointing import missing_state_files
    from dsft.training.rundir import RunDir

    holder = file.parent
    if RunDir.is_run(holder):
        return f" (it is in the run directory {holder}: --out {holder} --resume auto)"
    if not missing_state_files(holder):
        return f" (it is in the checkpoint {holder}: --resume {holder})"
    return ""


def register(app: typer.Typer) -> None:
    app.command("train")(train)
