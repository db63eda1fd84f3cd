"""``dsft train``: the recipe, top to bottom.

config -> tokenizer + template -> run directory -> data -> tokenized examples -> model (+ LoRA)
-> Trainer -> train (or resume) -> final weights + tokenizer with the training template -> run.json.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import PrinterCallback

from dsft.config import DsftConfig
from dsft.disk import USER_FILESYSTEM_ERRORS, disk_error, tree_bytes
from dsft.data.input_checks import check_inputs
from dsft.data.prepared_output import check_prepared_output
from dsft.errors import ConfigError, DsftError, UnsupportedError
from dsft.models.dropout import dropout_overrides
from dsft.models.gguf_source import dequantisation_note, read_import_record
from dsft.models.loading import load_tokenizer, use_cpu_accelerator_without_cuda
from dsft.models.resolve import resolve_model
from dsft.models.skeleton import check_lora_targets
from dsft.onednn_caches import bound_onednn_caches
from dsft.training.checkpointing import check_same_checkpoint, checkpoint_step, resolve_resume
from dsft.training.collators import make_collator, make_train_dataset
from dsft.training.distributed import resolve_strategy
from dsft.training.environment import environment_problems
from dsft.training.examples import describe_dropped
from dsft.training.gpu_telemetry import GpuTelemetry
from dsft.training.liveness import process_record
from dsft.training.guards import RunGuards
from dsft.training.monitoring import RichProgressCallback, TokenCounter, monitoring_callbacks, rebuild_metrics
from dsft.training.objective_checks import objective_problems, prompt_opens_think
from dsft.training.preflight import config_notices
from dsft.training.ranks import is_main_process, warn_for_job
from dsft.training.objectives import build_objective_trainer, load_preference_splits
from dsft.training.resume import check_same_data, data_files, data_fingerprint, planned_schedule
from dsft.training.resume_layout import (
    check_resume_layout, load_universal, remove_universal_checkpoints, universal_checkpoint,
)
from dsft.training.resume_lr import ResumedLearningRate
from dsft.training.resume_steps import check_steps_left, recorded_steps_per_epoch
from dsft.training.rundir import FINAL_DIR, RunDir
from dsft.training.setup import (
    build_model,
    build_training_arguments,
    load_splits,
    mixed_sources,
    resolve_template,
)
from dsft.training.step_saves import SaveEveryNSteps
from dsft.training.stop import StopOnSignal
from dsft.training.trainer import DsftTrainer
from dsft.training.trainer_hooks import load_checkpoint_weights

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    final_dir: Path
    global_step: int
    train_loss: float | None
    first_eval_loss: float | None
    last_eval_loss: float | None
    best_eval_loss: float | None
    elapsed_s: float
    # The stop signal (SIGTERM, SIGINT) that cut the run short (steps asked for were left); None when every
    # step ran, even if a signal came during the last one: the run is finished, and `dsft train` says so.
    stopped_by_signal: int | None = None
    # The stop signal that came during the run, whether or not it cut it short, so a caller running several
    # (a sweep's trials, the demo's stages) stops instead of going on to the next; None when none came.
    signal_received: int | None = None


def run_training(
    cfg: DsftConfig,
    run_dir: str | Path,
    resume: str | None = None,
    progress: bool = True,
    extra_callbacks: list[Any] | None = None,
    should_stop: Callable[[int], bool] | None = None,
    split_cache: dict[Any, Any] | None = None,
    reward_funcs: list[Callable[..., Any]] | None = None,
    said_notices: set[str] | None = None,
    lora_targets_checked: bool = False,
    inputs_checked: bool = False,
) -> RunResult:
    """Fine-tune ``cfg.model`` on ``cfg.data`` into ``run_dir``; ``resume`` is ``auto`` or a checkpoint path.

    ``should_stop(step)`` lets tests stop a run after a given step, as a kill would. ``split_cache`` keeps
    tokenized prepared data across runs (a sweep's trials tokenize once). ``reward_funcs`` are GRPO's
    rewards (built from ``grpo.rewards`` by the caller: they score with dsft.eval's metrics).
    ``said_notices`` holds the notices about the config already logged by a caller running several runs (a
    sweep's trials: once per sweep, not once per trial); those this run logs are added to it.
    ``lora_targets_checked`` says the caller has already run :func:`~dsft.models.skeleton.check_lora_targets` on
    ``cfg`` (``dsft train`` before the training stack loads, a sweep for every trial's settings): the skeleton is
    then not built a second time. ``inputs_checked`` says the caller has already run
    :func:`~dsft.data.input_checks.check_inputs` on ``cfg`` (``dsft train``, before its other refusals).
    """
    started = time.perf_counter()
    bound_onednn_caches()  # the library's callers too (the command line has already), before the first bf16 matmul
    use_cpu_accelerator_without_cuda()
    run_dir = Path(run_dir)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # the job's processes, as the launcher set them
    problems = environment_problems(cfg)
    if problems:
        raise UnsupportedError(f"{len(problems)} problem(s) with this machine", problems)
    notices = config_notices(cfg, world_size) if is_main_process() else []
    for notice in notices:
        if notice not in (said_notices or ()):  # said once (by a launched job's main process), before anything is read
            log.warning(notice)
            if said_notices is not None:
                said_notices.add(notice)
    if not inputs_checked:  # before the run directory is written or a model resolved
        check_inputs(cfg)
    if not lora_targets_checked:  # on the model's weightless skeleton: a typo costs no data preparation
        check_lora_targets(cfg)
    if not cfg.data.prepared_dir:  # the data is prepared into RUN/data, never over the user's files
        check_prepared_output(cfg, run_dir / "data", None, f"--out {run_dir}")
    run = RunDir(run_dir)
    previous = run.recorded_info()  # before this start rewrites it: what the resumed run recorded
    run.check(cfg, resuming=resume is not None)  # writes nothing: see run.prepare below
    point = resolve_resume(resume, run.checkpoint_root)  # damaged checkpoints skipped, and named
    checkpoint = point.checkpoint
    if checkpoint is not None:  # before config.yaml is rewritten with a schedule the checkpoint is already past
        check_steps_left(checkpoint, checkpoint_step(checkpoint), cfg.train, recorded_steps_per_epoch(checkpoint))
    # A checkpoint whose optimizer state this run cannot read is refused; a DeepSpeed ZeRO one partitioned for
    # another number of processes is read through a universal conversion (made just before training).
    universal = checkpoint is not None and check_resume_layout(
        checkpoint, resolve_strategy(cfg.train, world_size), world_size, cfg.train.zero_stage)
    if resume == "auto" and checkpoint is None:  # said: a mistyped --out would otherwise train from scratch silently
        warn_for_job(log, "--resume auto: no checkpoint in %s yet; training starts from step 0", run_dir)
    changes = run.applied_changes(cfg) if checkpoint is not None else []
    if changes:  # said: a --set left off the resumed command changes the run without a word otherwise
        warn_for_job(log, "--resume: continuing %s with %d changed setting(s), applied from the next step: %s (the "
                     "previous config is kept as config.before-TIME.yaml)", checkpoint.name, len(changes),
                     "; ".join(changes))

    # Order matters: the template needs the tokenizer; data length filters need the tokenizer;
    # the model is loaded last so a data error costs no model load.
    model_dir = resolve_model(cfg.model.name_or_path, cache_dir=cfg.model.cache_dir, revision=cfg.model.revision)
    from transformers import AutoConfig

    # Model-config checks (dropout) read config.json only: a wrong key fails before data preparation.
    config_overrides = dropout_overrides(
        cfg.model, AutoConfig.from_pretrained(str(model_dir), trust_remote_code=cfg.model.trust_remote_code)
    )
    imported = read_import_record(model_dir)  # a GGUF/Ollama source: say what the weights are
    if imported is not None:
        warn_for_job(log, dequantisation_note(imported))
    tokenizer = load_tokenizer(model_dir)
    template_name, template = resolve_template(cfg, model_dir, tokenizer)
    sft = cfg.train.objective == "sft"
    problems = objective_problems(cfg, prompt_opens_think(template, cfg.template.thinking),
                                  world_size)
    if problems:
        raise ConfigError(f"train.objective={cfg.train.objective}: the config does not fit it", problems)
    # Written only now: a model that cannot be fetched, or a template or objective that does not fit, leaves
    # --out as it was. From here a failure leaves config.yaml and data/ (its report is what the error points
    # at), and the same command starts over there: a run that never trained is no run (RunDir.started).
    run.prepare(cfg, resuming=resume is not None)
    if sft:
        splits = load_splits(cfg, tokenizer, template, run_dir, split_cache)
    else:
        splits = load_preference_splits(cfg, tokenizer, template, run_dir)
    dropped = describe_dropped(splits["train"], "train", cfg.train.max_seq_len)  # preference records too
    if not splits["train"].examples:
        raise DsftError("no training examples left after preparation; "  # every process prepared the same data
                        + (dropped or "see data_report.json in the run directory"), job_wide=True)
    if dropped:
        warn_for_job(log, dropped)  # also in run.json's "dropped"
    fingerprint, files = data_fingerprint(splits), data_files(cfg)
    if checkpoint is not None:
        check_same_data(previous, fingerprint, files)  # data edited in place would change every later step

    from transformers import set_seed

    set_seed(cfg.train.seed)  # before the adapter is created: LoRA A matrices are drawn from this RNG
    model = build_model(cfg, model_dir, tokenizer, config_overrides, adapter=sft)  # TRL adds the adapter
    # Only the main process logs; it samples every visible GPU.
    telemetry = GpuTelemetry.open() if is_main_process() else None
    counter = TokenCounter()
    callbacks = _callbacks(cfg, run_dir, counter, bool(splits["val"].examples), progress, should_stop,
                           extra_callbacks, telemetry)
    metrics = callbacks[0]
    stopper = StopOnSignal()  # SIGTERM or Ctrl-C: finish the step, save a checkpoint, end as stopped
    callbacks.append(stopper)
    if sft:
        trainer = _build_trainer(cfg, run_dir, model, tokenizer, splits, callbacks, counter)
    else:
        trainer = build_objective_trainer(cfg, run_dir, model, tokenizer, splits, callbacks, counter, reward_funcs)
    check_same_checkpoint(checkpoint)  # the processes have met: each resolved --resume alone
    steps_per_epoch, total = planned_schedule(trainer)
    if checkpoint is not None:
        # A run that recorded no steps an epoch (written before dsft recorded them) is compared only now.
        check_steps_left(checkpoint, checkpoint_step(checkpoint), cfg.train, steps_per_epoch)
        # The checkpoint's step was evaluated (and logged) by the run that wrote it: no second evaluation
        # of the same weights, and no second metrics.jsonl line for that step.
        trainer.args.eval_on_start = False
    info: dict[str, Any] = {
        "template": template_name, **run.base_model_record(cfg, model_dir), "model_source": imported,
        "method": cfg.train.method, "masking": cfg.template.masking, "thinking": cfg.template.thinking,
        "objective": cfg.train.objective,
        "resumed_from": str(checkpoint) if checkpoint else None, "resume_skipped": point.describe_skipped(),
        "examples": {k: len(v.examples) for k, v in splits.items()},
        "dropped": {k: v.dropped for k, v in splits.items() if v.dropped},
        "tools_not_rendered": {k: v.tools_not_rendered for k, v in splits.items() if v.tools_not_rendered},
        "reasoning_not_rendered": {k: v.reasoning_not_rendered for k, v in splits.items() if v.reasoning_not_rendered},
        "assistant_turns_run_together": {k: v.assistant_turns_run_together for k, v in splits.items()
                                         if v.assistant_turns_run_together},
        "data_fingerprint": fingerprint, "data_files": files,
        "data_mix": mixed_sources(run_dir) if sft else [],
        "steps_per_epoch": steps_per_epoch,  # what a resume's train.epochs is counted in (dsft.training.resume_steps)
    }
    if checkpoint is not None and checkpoint_step(checkpoint) >= total:
        # Nothing left to train (a kill during the final save, or a finished run resumed): the Trainer
        # would still take one more step, so final/ comes from the checkpoint itself.
        warn_for_job(log, "%s is at or after the last step (%d): nothing to train", checkpoint.name, total)
        result = _finish_from_checkpoint(trainer, tokenizer, template, run, checkpoint, info, previous, started)
        metrics.close()
        return result
    resume_from = checkpoint
    if universal:
        assert checkpoint is not None
        resume_from = universal_checkpoint(checkpoint, run.checkpoint_root)
        load_universal(trainer)
        info["resumed_through"] = str(resume_from)
    elif is_main_process():  # a conversion an earlier, stopped resume left, which no process of this run reads
        remove_universal_checkpoints(run.checkpoint_root)
    run.write_info(**info, status="running", process=process_record())
    stopper.install()
    try:
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if universal and is_main_process():  # every process read it when the Trainer started
            remove_universal_checkpoints(run.checkpoint_root)
        trainer.check_finite_weights("final/")
        final_dir = save_final_weights(trainer, tokenizer, template, run)
    except DsftError:
        metrics.close()
        for cb in callbacks:
            if isinstance(cb, RichProgressCallback):
                cb.close()
        run.write_info(**info, status="failed", flags=trainer.flags)
        raise
    finally:
        stopper.restore()
    metrics.close()
    rows = run.metrics()
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    best = trainer.state.best_metric if cfg.eval.metric == "eval_loss" else None
    stopped_early = ((should_stop is not None or stopper.requested)
                     and trainer.state.global_step < trainer.state.max_steps)
    signal_received = (stopper.signum or signal.SIGTERM) if stopper.requested else None
    run.write_info(
        **info, status="stopped" if stopped_early else "stalled" if trainer.flags else "finished",
        global_step=trainer.state.global_step, best_checkpoint=trainer.state.best_model_checkpoint,
        best_metric={cfg.eval.metric_key(): trainer.state.best_metric} if trainer.state.best_metric is not None else None,
        final=str(final_dir.relative_to(run_dir)), flags=trainer.flags,
    )
    return RunResult(
        run_dir=run_dir, final_dir=final_dir, global_step=trainer.state.global_step,
        train_loss=getattr(output, "training_loss", None),
        first_eval_loss=evals[0] if evals else None, last_eval_loss=evals[-1] if evals else None,
        best_eval_loss=best if best is not None else (min(evals) if evals else None),
        elapsed_s=time.perf_counter() - started,
        stopped_by_signal=signal_received if stopped_early else None,
        signal_received=signal_received,
    )


def _finish_from_checkpoint(
    trainer: Any, tokenizer: Any, template: Any, run: RunDir, checkpoint: Path, info: dict[str, Any],
    previous: dict[str, Any], started: float,
) -> RunResult:
    """A resume with no step left: final/ from the checkpoint (or the best one), unless it is already there."""
    step = checkpoint_step(checkpoint)
    final_dir = run.path / FINAL_DIR
    if not (previous.get("status") in ("finished", "stalled") and previous.get("global_step") == step
            and final_dir.is_dir()):
        load_checkpoint_weights(trainer, checkpoint)
        trainer.check_finite_weights("final/")
        final_dir = save_final_weights(trainer, tokenizer, template, run)
    rows = rebuild_metrics(run.metrics_path, trainer.state.log_history, step)
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    run.write_info(**info, status="stalled" if previous.get("status") == "stalled" else "finished",
                   global_step=step, best_checkpoint=trainer.state.best_model_checkpoint,
                   final=str(final_dir.relative_to(run.path)), flags=previous.get("flags") or [])
    return RunResult(run_dir=run.path, final_dir=final_dir, global_step=step, train_loss=None,
                     first_eval_loss=evals[0] if evals else None, last_eval_loss=evals[-1] if evals else None,
                     best_eval_loss=min(evals) if evals else None, elapsed_s=time.perf_counter() - started)


def save_final_weights(trainer: Any, tokenizer: Any, template: Any, run: RunDir) -> Path:
    """Weights (adapter or full) + tokenizer carrying the chat template training used.

    Written under ``.final.staging`` and renamed into place; a full disk (or read-only file system)
    removes the staging directory and is one error naming the path and the space needed.
    """
    final = run.path / FINAL_DIR
    staging = run.path / f".{FINAL_DIR}.staging"
    main = trainer.args.should_save
    if main and staging.exists():  # a killed save's leftovers
        shutil.rmtree(staging)
    # Every rank takes part in the save (ZeRO-3 gathers the shards); only the main process writes and removes files,
    # and none starts before the leftovers are gone. A rank arriving late removed the main process's half-written
    # staging directory: DDP full fine-tunes failed at their final save ("No such file or directory").
    trainer.accelerator.wait_for_everyone()
    checkpoints = run.checkpoints()
    needed = tree_bytes(checkpoints[-1].glob("*.safetensors")) if checkpoints else None
    try:
        trainer.save_model(str(staging))
        if main:
            tokenizer.chat_template = template.chat_template
            tokenizer.save_pretrained(str(staging))
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
    except OSError as exc:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in USER_FILESYSTEM_ERRORS:
            raise disk_error(exc, final, needed) from None
        raise
    trainer.accelerator.wait_for_everyone()
    return final


def _callbacks(
    cfg: DsftConfig, run_dir: Path, counter: TokenCounter, has_eval: bool, progress: bool,
    should_stop: Callable[[int], bool] | None, extra: list[Any] | None, telemetry: GpuTelemetry | None = None,
) -> list[Any]:
    """The monitoring callbacks first (metrics.jsonl, ...), then the extras, early stopping and the test stop.

    Order matters at each evaluation: the monitoring and extra callbacks add metrics (perplexity, a
    generation metric) that early stopping and the best-checkpoint choice then read.
    """
    callbacks: list[Any] = monitoring_callbacks(run_dir, counter, progress, "tensorboard" in cfg.train.report_to,
                                                telemetry) + [ResumedLearningRate(), SaveEveryNSteps()] + list(extra or [])
    if cfg.eval.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(cfg.eval.early_stopping_patience, cfg.eval.early_stopping_min_delta))
    if should_stop is not None:
        callbacks.append(_StopAt(should_stop))
    return callbacks


def _build_trainer(
    cfg: DsftConfig, run_dir: Path, model: Any, tokenizer: Any, splits: dict[str, Any], callbacks: list[Any],
    counter: TokenCounter,
) -> Any:
    """DsftTrainer (packing collator, supervised-token loss) with the run's guards and callbacks."""
    val = splits["val"].examples
    trainer = RunTrainer(
        model=model,
        args=build_training_arguments(cfg, run_dir, has_eval=bool(val), model=model),
        train_dataset=make_train_dataset(splits["train"].examples, cfg.train, seed=cfg.train.seed),
        eval_dataset=make_train_dataset(val, cfg.train, seed=cfg.train.seed) if val else None,
        data_collator=make_collator(cfg.train, tokenizer, getattr(model.config, "_attn_implementation", None)),
        processing_class=tokenizer,
        callbacks=callbacks,
        loss_chunk_size=cfg.train.loss_chunk_size,
        loss_dtype=cfg.train.loss_dtype,
        offload_activations=cfg.train.offload_activations,
        compact_cpu_memory=cfg.train.compact_cpu_memory,
        label_smoothing=cfg.train.label_smoothing,
        token_counter=counter,
        zero_grad_steps=cfg.train.zero_grad_steps,
    )
    # dsft logs through metrics.jsonl and its own progress bar; the Trainer's dict printer is noise.
    trainer.remove_callback(PrinterCallback)
    return trainer


class RunTrainer(RunGuards, DsftTrainer):
    """The SFT run's trainer: DsftTrainer's loss with the run guards (NaN stop, atomic checkpoints, tokens)."""


class _StopAt(TrainerCallback):
    """Ends training after a step, as if the process were stopped there (used by resume tests)."""

    def __init__(self, should_stop: Callable[[int], bool]) -> None:
        self.should_stop = should_stop

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.should_stop(state.global_step):
            control.should_training_stop = True
        return control
