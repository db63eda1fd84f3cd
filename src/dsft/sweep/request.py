"""What ``dsft sweep`` is asked (:class:`SweepRequest`) and its checks, which import nothing heavy: a wrong flag,
config or grid value is refused before the runner (:mod:`dsft.sweep.runner`) imports torch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.config import DsftConfig, load_config
from dsft.config.loader import problems_source
from dsft.data.input_checks import check_inputs
from dsft.data.prepared_output import holds_only_prepared_output
from dsft.errors import ConfigError, DsftError, UnsupportedError
from dsft.models.dropout import dropout_overrides
from dsft.models.skeleton import model_config
from dsft.sweep.report import SWEEP_FILE
from dsft.sweep.space import MAX_CORNERS, SearchSpace, overrides_of
from dsft.training.environment import environment_problems
from dsft.training.resume import changed_settings

log = logging.getLogger(__name__)

SAMPLERS = ("grid", "random", "tpe")
DATA_DIR = "data"  # SWEEP/data: the data prepared once for every trial
LAUNCHES = ("local", "script", "slurm")


@dataclass
class SweepRequest:
    """What ``dsft sweep`` was asked: the base config (file + preset + --set) and the search."""

    config: Path | None
    overrides: list[str]
    preset: str | None
    space: SearchSpace
    out: Path
    sampler: str = "grid"
    trials: int | None = None
    prune: bool = False
    launch: str = "local"
    seed: int = 0
    progress: bool = False
    resume: bool = False  # continue the stopped sweep in ``out`` (see check_resumable)
    # Checks a trial's config before anything runs (the CLI passes dsft.plan.preflight: the sweep package
    # sits below plan in the layers); the default checks only this machine's optimizer and trackers.
    check: Callable[[DsftConfig], None] | None = None

    def record(self, base: DsftConfig) -> dict[str, Any]:
        """What decides the trials a sweep runs, kept in sweep.json so that ``--resume`` continues the same sweep
        (the trial budget is not in it: a resumed random/TPE sweep may be given more trials)."""
        return {"sampler": self.sampler, "seed": self.seed, "prune": self.prune,
                "grid": dict(self.space.choices), "range": [axis.text(k) for k, axis in self.space.ranges.items()],
                "config": base.model_dump(mode="json")}

    def trial_config(self, params: dict[str, Any], prepared: Path | None) -> DsftConfig:
        data = [f"data.prepared_dir={prepared}"] if prepared is not None else []
        return load_config(self.config, [*self.overrides, *data, *overrides_of(params)], preset=self.preset,
                           set_flags=self.overrides)


def check_request(request: SweepRequest) -> DsftConfig:
    """Every check of a sweep that needs neither data nor model (the flags, the base config and each grid point's
    config, the output directory); returns the base config. ``dsft sweep`` runs it before torch is imported."""
    base = load_config(request.config, request.overrides, preset=request.preset, set_flags=request.overrides)
    if request.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {request.sampler}: choose one of {', '.join(SAMPLERS)}")
    if request.launch not in LAUNCHES:
        raise ConfigError(f"--launch {request.launch}: choose one of {', '.join(LAUNCHES)}")
    if request.sampler == "grid":
        if request.prune:
            raise ConfigError("--prune needs a sampler that compares trials as they run (--sampler random or tpe)")
        points = request.space.grid()  # refuses --range axes
        if request.trials:
            raise ConfigError(f"--trials {request.trials}: a grid sweep runs every combination of its --grid values "
                              f"({len(points)} here); --trials is the budget of --sampler random or tpe")
    elif not request.trials:
        raise ConfigError(f"--sampler {request.sampler}: give the trial budget with --trials N")
    if request.launch != "local" and request.sampler != "grid":
        raise ConfigError(f"--launch {request.launch}: separate launches run a --grid sweep; random/TPE trials "
                          "depend on earlier results and run in this process")
    fixed = [k for k in request.space.keys if k.startswith(("data.", "model.name_or_path", "model.revision"))]
    if fixed:
        raise ConfigError(f"{', '.join(fixed)}: the data is prepared once for every trial of a sweep, so data and "
                          "model keys cannot be swept; run one sweep per dataset or model")
    check_inputs(base)  # no training data, or a data file that is not there
    if not base.data.prepared_dir and not base.data.val and base.data.val_ratio == 0:
        raise ConfigError("a sweep chooses on validation data: set data.val files or data.val_ratio > 0")
    if request.check is not None:
        request.check(base)
    else:
        problems = environment_problems(base)
        if problems:
            raise UnsupportedError(f"{len(problems)} problem(s) with this machine", problems)
    dropouts = DropoutCheck(request)
    dropouts.check(base)
    out = request.out
    # A sweep that stopped while preparing its data (the error points at its report) left only data/: the same
    # command prepares it again there.
    stopped_preparing = out.is_dir() and [p.name for p in out.iterdir()] == [DATA_DIR] \
        and holds_only_prepared_output(out / DATA_DIR)
    if out.exists() and any(out.iterdir()) and not (out / SWEEP_FILE).is_file() and not stopped_preparing:
        raise DsftError(f"--out {out}: exists, is not empty and holds no sweep; choose a new directory")
    if request.resume:
        check_resumable(request, base)
    elif (out / SWEEP_FILE).is_file():
        raise DsftError(f"--out {out}: already holds a sweep; choose a new directory (or --collect its results, or "
                        "--resume it if it stopped)")
    # Every trial config is validated before any data is read or any model loaded: each grid point, or each
    # value and corner of the space a random/TPE sampler draws from (else a bad one fails hours into the sweep).
    if request.sampler != "grid" and not request.space.corners_checked():
        log.warning("the search space has %d corners, too many to check each (at most %d): each --grid value and "
                    "--range bound was checked on its own, so values that are wrong only together fail in their "
                    "trial", request.space.corners(), MAX_CORNERS)
    for params, place in checked_points(request):
        try:
            trial_cfg = request.trial_config(params, None)
            if request.check is not None:
                request.check(trial_cfg)
            dropouts.check(trial_cfg, trial=True)
        except ConfigError as error:  # labelled with the --grid value or --range (and where) that caused it
            if not error.problems:
                raise
            axes = request.space.ranges
            choices = overrides_of({key: value for key, value in params.items() if key not in axes})
            ranges = [axes[key].text(key) for key in params if key in axes]
            source = problems_source(str(request.config or "config"), request.overrides, error.problems, choices,
                                     place, ranges)
            raise ConfigError(f"{source}: {len(error.problems)} problem(s)", error.problems) from None
    return base


class DropoutCheck:
    """Refuses a dropout key the model's architecture lacks (:func:`dsft.models.dropout.dropout_overrides`, the
    decision ``dsft train`` makes) in the base config or a trial's, before any trial starts, named with where the
    value came from (the config file, a ``--set``; a trial's ``--grid``/``--range`` value then raises a problem
    that :func:`check_request` labels). The model's config is read once, and only when a dropout key is set: the
    model is the same in every trial (it cannot be swept)."""

    def __init__(self, request: SweepRequest) -> None:
        self.request = request
        self.model: Any = None
        self.read = False

    def check(self, cfg: DsftConfig, trial: bool = False) -> None:
        m = cfg.model
        if m.attention_dropout is None and m.hidden_dropout is None:
            return
        if not self.read:  # None where it cannot be known without the weights: each trial's run checks it then
            self.model = model_config(m.name_or_path, m.cache_dir, m.revision, m.trust_remote_code)
            self.read = True
        if self.model is None:
            return
        try:
            dropout_overrides(m, self.model)
        except ConfigError as error:
            if trial:  # a trial's: check_request labels it with its --grid value or --range
                raise ConfigError(str(error), [str(error)]) from None
            source = problems_source(str(self.request.config or "config"), self.request.overrides, [str(error)])
            raise ConfigError(f"{source}: 1 problem(s)", [str(error)]) from None


def check_resumable(request: SweepRequest, base: DsftConfig) -> None:
    """Refuse ``--resume`` where there is no sweep to continue, or one asked for something else (the differences
    named): its finished trials would be mixed with trials of another search."""
    out = request.out
    if request.launch != "local":
        raise ConfigError(f"--resume --launch {request.launch}: launched trials are continued one by one (dsft train "
                          "TRIAL/config.yaml --out TRIAL --resume auto), then read with --collect")
    if not (out / SWEEP_FILE).is_file():
        raise DsftError(f"--resume: --out {out} holds no sweep ({SWEEP_FILE} missing); start it without --resume")
    recorded = json.loads((out / SWEEP_FILE).read_text(encoding="utf-8")).get("request")
    if recorded is None:
        raise DsftError(f"--resume: {out / SWEEP_FILE} was written before sweeps recorded what they were asked, so "
                        "this command cannot be checked against it; continue its stopped trial with dsft train "
                        "TRIAL/config.yaml --out TRIAL --resume auto, then dsft sweep --collect")
    asked = json.loads(json.dumps(request.record(base)))  # as sweep.json holds it
    changed = [f"config {line}" for line in changed_settings(recorded.pop("config", {}), asked.pop("config"))]
    changed += [f"--{key}: {recorded.get(key)} -> {value}" for key, value in asked.items()
                if recorded.get(key) != value]
    if changed:
        raise DsftError(f"--resume: {out} holds a sweep asked for something else; run the command that started it "
                        "(the trial budget may change), or start a new --out directory", changed)


def checked_points(request: SweepRequest) -> list[tuple[dict[str, Any], str | None]]:
    """The trial parameters checked before anything runs, each with what places it in a refusal: every grid point
    (its trial), or what a random/TPE sampler draws from (:meth:`SearchSpace.probes`; a range bound or a corner
    by its values, a choice alone by its ``--grid`` value only)."""
    if request.sampler == "grid":
        return [(params, trial_name(number)) for number, params in enumerate(request.space.grid())]
    return [(params, None if len(params) == 1 and not set(params) & set(request.space.ranges)
             else "at " + ", ".join(overrides_of(params))) for params in request.space.probes()]


def trial_name(number: int) -> str:
    """A trial's run directory name inside the sweep directory: ``trial_name(3) == 'trial-003'``."""
    return f"trial-{number:03d}"
