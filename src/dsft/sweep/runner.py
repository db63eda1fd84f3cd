"""``dsft sweep``: train one run per point of a search space and choose the best on validation data.

The data is prepared once into ``SWEEP/data`` (cleaning, dedup, split; or ``data.prepared_dir`` is
reused) and every trial reads it; trials run in this process one after another and share the tokenized
examples, so the data is tokenized once. Each trial is a normal run directory ``SWEEP/trial-NNN``
(``dsft eval``, ``export`` and ``serve`` take it like any run). Samplers: ``grid`` (every combination of
the ``--grid`` values), ``random`` and ``tpe`` (Optuna, ``--trials`` of them, ``--grid`` values as
choices and ``--range`` axes), with optional pruning of a trial whose intermediate validation value is
worse than the median of the earlier trials at the same step.

With ``launch="script"`` or ``"slurm"`` no trial runs here: each trial's resolved config is written to
``SWEEP/configs/`` with ``launch.sh`` (one ``dsft train`` per line) and ``sweep.sbatch`` (a SLURM job array),
and ``collect_sweep`` reads the finished trials back into the report.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from dsft.config import DsftConfig, save_config
from dsft.data.pipeline import prepare
from dsft.data.preference_pipeline import prepare_preference
from dsft.data.split import split_file
from dsft.errors import DsftError, Stopped
from dsft.eval.callbacks import training_eval_callbacks
from dsft.eval.rewards import objective_rewards
from dsft.models.loading import load_tokenizer
from dsft.models.resolve import resolve_model
from dsft.models.skeleton import check_lora_targets
from dsft.sweep.report import SWEEP_FILE, Sweep, Trial, best_evaluation, choose_best, write_report
from dsft.sweep.request import DATA_DIR, SweepRequest, check_request, checked_points, trial_name
from dsft.training.checkpointing import checkpoint_step
from dsft.training.run import run_training
from dsft.training.rundir import NOT_STARTED, RunDir


# Trial statuses that a sweep's --resume keeps (a stopped trial runs again, from its checkpoint).
ENDED = ("finished", "pruned", "failed")


def prepare_sweep_data(base: DsftConfig, out: Path) -> Path:
    """Run the data pipeline once for every trial (or reuse ``data.prepared_dir``); refuse an empty val split."""
    if base.data.prepared_dir:
        prepared = Path(base.data.prepared_dir)
    else:
        model_dir = resolve_model(base.model.name_or_path, cache_dir=base.model.cache_dir, revision=base.model.revision)
        prepared = out / DATA_DIR
        if base.train.objective != "sft":  # preference pairs, labelled completions or RL prompts
            prepare_preference(base, prepared, base.train.objective, load_tokenizer(model_dir))
        else:
            prepare(base, load_tokenizer(model_dir), prepared)
    val = prepared / split_file("val")
    if not val.is_file() or not val.read_text(encoding="utf-8").strip():
        raise DsftError(f"{prepared}: no validation records; a sweep chooses on validation data (data.val or "
                        "data.val_ratio > 0)")
    return prepared.resolve()


def run_sweep(request: SweepRequest) -> Sweep:
    """Run (or, for separate launches, write) every trial; write and return the report."""
    base = check_request(request)
    points = request.space.grid() if request.sampler == "grid" else []
    sweep = Sweep(base.eval.metric_key(), base.eval.higher_is_better(), request.sampler, request=request.record(base))
    kept = kept_trials(request.out) if request.resume else []
    shared = TrialsShared()
    for cfg in [base, *(request.trial_config(params, None) for params, _ in checked_points(request))]:
        key = lora_check_key(cfg)
        if key not in shared.lora_checked:  # on the weightless skeleton: a typo costs no data preparation
            check_lora_targets(cfg)
            shared.lora_checked.add(key)
    prepared = prepare_sweep_data(base, request.out)  # a model that cannot be fetched leaves no --out behind
    request.out.mkdir(parents=True, exist_ok=True)
    if request.launch != "local":
        _write_launch_files(request, sweep, points, prepared)
        write_report(sweep, request.out)
        return sweep
    if request.sampler == "grid":
        for number, params in enumerate(points):
            if number < len(kept):  # --resume: ended before the stop, as recorded
                sweep.trials.append(kept[number])
                continue
            sweep.trials.append(_run_trial(request, sweep, number, params, prepared, shared,
                                           last_trial=number == len(points) - 1))
            write_report(sweep, request.out)  # the report is current after every trial
    else:
        _run_optuna(request, sweep, prepared, shared, kept)
    write_report(sweep, request.out)
    return sweep


def kept_trials(out: Path) -> list[Trial]:
    """The trials of the sweep in ``out`` that ``--resume`` keeps: those that ended (finished, pruned or failed)
    before the stop, in order. The stopped trial, and any after it, run again: the stopped one from its newest
    checkpoint (``_run_trial``)."""
    recorded = Sweep.from_json(json.loads((out / SWEEP_FILE).read_text(encoding="utf-8"))).trials
    ended = [trial.status in ENDED for trial in recorded]
    return recorded[: ended.index(False) if False in ended else len(recorded)]


@dataclass
class TrialsShared:
    """What the trials of one sweep, run in this process, share: the tokenized splits (tokenized once) and the
    notices about the config already logged (said once per sweep, not once per trial) and the LoRA settings whose
    targets were checked on the model's skeleton (:func:`lora_check_key`: each checked once per sweep)."""

    splits: dict[Any, Any] = field(default_factory=dict)
    notices: set[str] = field(default_factory=set)
    lora_checked: set[str] = field(default_factory=set)


def lora_check_key(cfg: DsftConfig) -> str:
    """What :func:`check_lora_targets` decides on: the model, the training method and the ``lora`` group. A trial
    whose settings give a key already checked (every grid point, a random/TPE draw like a probe) is not checked
    again; a draw no probe gave (a range value between the bounds) is checked when its run starts."""
    return json.dumps([cfg.model.model_dump(mode="json"), cfg.train.method, cfg.lora.model_dump(mode="json")],
                      sort_keys=True)


def _run_trial(request: SweepRequest, sweep: Sweep, number: int, params: dict[str, Any], prepared: Path,
               shared: TrialsShared, last_trial: bool, extra: list[TrainerCallback] | None = None) -> Trial:
    """Train one trial; a stop signal ends the sweep after it (:class:`Stopped`) unless it was the last trial
    and the signal let it finish (it came during the final step: the sweep is complete)."""
    run_dir = request.out / trial_name(number)
    trial = Trial(number, params, str(run_dir))
    rewards, stop = None, None
    try:
        # Inside: a drawn value the search-space check did not probe fails this trial, which sweep.json keeps.
        cfg = request.trial_config(params, prepared)
        rewards = objective_rewards(cfg)  # GRPO's; weights: in the config
        # --resume: a trial the stop left with a checkpoint continues from it (one without starts over).
        resume = "auto" if request.resume and RunDir(run_dir).checkpoints() else None
        result = run_training(cfg, run_dir, resume=resume, progress=request.progress, split_cache=shared.splits,
                              reward_funcs=rewards, said_notices=shared.notices,
                              lora_targets_checked=lora_check_key(cfg) in shared.lora_checked,
                              extra_callbacks=training_eval_callbacks(cfg, run_dir) + list(extra or []))
        trial.status = "stopped" if result.stopped_by_signal else "finished"
        trial.steps = result.global_step
        # A signal that only came during the trial's last step still means: start no next trial.
        stop = result.signal_received if result.stopped_by_signal or not last_trial else None
    except DsftError as exc:  # e.g. a NaN loss at a high learning rate: the other trials still run
        trial.status, trial.error = "failed", str(exc).splitlines()[0]
    trial.value, trial.best_step, last = best_evaluation(run_dir, sweep.metric, sweep.greater_is_better)
    trial.steps = trial.steps or last
    if stop is not None:  # SIGTERM / Ctrl-C: training stopped this trial with a checkpoint; no next trial
        sweep.trials.append(trial)
        write_report(sweep, request.out)
        raise Stopped(stop)
    return trial


class OptunaPruning(TrainerCallback):
    """Reports the selection metric at each evaluation to an Optuna trial and stops training when pruned."""

    def __init__(self, trial: Any, key: str) -> None:
        self.trial = trial
        self.key = key
        self.pruned = False

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kw: Any) -> None:
        value = (metrics or {}).get(self.key)
        if state.global_step == 0 or value is None:  # step 0 measures the base model, the same in every trial
            return
        self.trial.report(float(value), state.global_step)
        if self.trial.should_prune():
            self.pruned = True
            control.should_training_stop = True


def report_evaluations(optuna_trial: Any, run_dir: Path, key: str, up_to: int | None = None) -> None:
    """Report to ``optuna_trial`` each evaluation ``run_dir`` logged (steps after the start, up to ``up_to``), as
    :class:`OptunaPruning` reported them while it trained: a resumed sweep's sampler and pruner see the trials
    it keeps as they were."""
    for row in RunDir(run_dir).metrics():
        step, value = int(row.get("step", 0)), row.get(key)
        if step > 0 and isinstance(value, (int, float)) and (up_to is None or step <= up_to):
            optuna_trial.report(float(value), step)


def _run_optuna(request: SweepRequest, sweep: Sweep, prepared: Path, shared: TrialsShared, kept: list[Trial]) -> None:
    try:
        import optuna  # optional dependency (dsft[sweep]): only random/TPE sweeps need it
    except ImportError:
        raise DsftError(f"--sampler {request.sampler} needs Optuna: pip install optuna (or \"dsft[sweep]\")") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.RandomSampler(seed=request.seed) if request.sampler == "random"
               else optuna.samplers.TPESampler(seed=request.seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0) if request.prune
              else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize" if sweep.greater_is_better else "minimize",
                                sampler=sampler, pruner=pruner)

    def suggest(optuna_trial: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, values in request.space.choices.items():
            params[key] = optuna_trial.suggest_categorical(key, values)
        for key, axis in request.space.ranges.items():
            low, high = axis.bounds()  # the bounds checked before the first trial (check_request)
            if axis.kind == "int":
                params[key] = optuna_trial.suggest_int(key, int(low), int(high))
            else:
                params[key] = optuna_trial.suggest_float(key, low, high, log=axis.kind == "log")
        return params

    # --resume: the kept trials are asked and told again, in order, with what they reported, so the sampler and the
    # pruner stand where they stood at the stop and draw the next trials as the sweep would have drawn them.
    for trial in kept:
        optuna_trial = study.ask()
        params = suggest(optuna_trial)
        if params != trial.params:  # a sampler that draws otherwise for the same seed and history (another Optuna)
            raise DsftError(f"--resume: {trial.name} was drawn as {trial.params}, the sampler now draws {params} "
                            "in its place; start a new --out directory")
        report_evaluations(optuna_trial, Path(trial.run_dir), sweep.metric)
        if trial.status == "pruned":
            study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
        elif trial.status == "finished" and trial.value is not None:
            study.tell(optuna_trial, trial.value)
        else:  # failed, or logged no value: the objective raised DsftError, which optimize records as failed
            study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
        sweep.trials.append(trial)

    def objective(optuna_trial: Any) -> float:
        params = suggest(optuna_trial)
        run_dir = request.out / trial_name(optuna_trial.number)
        checkpoints = RunDir(run_dir).checkpoints() if request.resume else []
        if checkpoints:  # the stopped trial: its evaluations up to the checkpoint it continues from
            report_evaluations(optuna_trial, run_dir, sweep.metric, checkpoint_step(checkpoints[-1]))
        pruning = OptunaPruning(optuna_trial, sweep.metric)
        trial = _run_trial(request, sweep, optuna_trial.number, params, prepared, shared,
                           last_trial=optuna_trial.number == request.trials - 1, extra=[pruning])
        if pruning.pruned and trial.status == "finished":
            trial.status = "pruned"
        sweep.trials.append(trial)
        write_report(sweep, request.out)
        if trial.status == "pruned":
            raise optuna.TrialPruned()
        if trial.value is None:
            raise DsftError(f"{trial.name}: logged no {sweep.metric} ({trial.status}: {trial.error or 'no evaluation'})")
        return trial.value

    study.optimize(objective, n_trials=max((request.trials or 0) - len(kept), 0), catch=(DsftError,))


def _write_launch_files(request: SweepRequest, sweep: Sweep, points: list[dict[str, Any]], prepared: Path) -> None:
    """Per-trial configs, ``launch.sh`` (one ``dsft train`` per trial) and ``sweep.sbatch`` (a job array)."""
    configs = request.out / "configs"
    configs.mkdir(exist_ok=True)
    out = request.out.resolve()
    commands = []
    for number, params in enumerate(points):
        name = trial_name(number)
        save_config(request.trial_config(params, prepared), configs / f"{name}.yaml")
        sweep.trials.append(Trial(number, params, str(out / name)))
        commands.append(f"dsft train {shlex.quote(str(configs.resolve() / (name + '.yaml')))} "
                        f"--out {shlex.quote(str(out / name))}")
    collect = f"dsft sweep --collect --out {shlex.quote(str(out))}"
    (request.out / "launch.sh").write_text(
        "#!/usr/bin/env bash\n# One line per trial: run them anywhere, in any order, then: " + collect + "\n"
        "set -euo pipefail\n" + "\n".join(commands) + "\n", encoding="utf-8")
    (request.out / "sweep.sbatch").write_text(
        "#!/usr/bin/env bash\n"
        f"#SBATCH --job-name=dsft-sweep\n#SBATCH --array=0-{len(points) - 1}\n#SBATCH --gpus=1\n"
        f"#SBATCH --output={out}/slurm-%A_%a.out\n"
        "# Submit: sbatch sweep.sbatch; when every task is done: " + collect + "\n"
        "set -euo pipefail\n"
        'ID=$(printf "%03d" "$SLURM_ARRAY_TASK_ID")\n'
        f'dsft train {shlex.quote(str(configs.resolve()))}/trial-$ID.yaml --out {shlex.quote(str(out))}/trial-$ID\n',
        encoding="utf-8")


def collect_sweep(out: Path) -> Sweep:
    """Read every trial of a sweep back from its run directory and rewrite the report."""
    path = out / SWEEP_FILE
    if not path.is_file():
        raise DsftError(f"--out {out}: holds no sweep ({SWEEP_FILE} missing)")
    sweep = Sweep.from_json(json.loads(path.read_text(encoding="utf-8")))
    for trial in sweep.trials:
        if trial.status in ("finished", "pruned", "failed") and trial.value is not None:
            continue
        # The run's own status (interrupted: recorded running, its process gone, a SLURM time limit, say); a
        # stalled run finished its steps, as a trial run here would count it.
        status = RunDir(trial.run_dir).status
        trial.status = {NOT_STARTED: "pending", "stalled": "finished"}.get(status, status)
        trial.value, trial.best_step, trial.steps = best_evaluation(trial.run_dir, sweep.metric, sweep.greater_is_better)
    choose_best(sweep)
    write_report(sweep, out)
    return sweep
