"""A resume cannot take steps back: the step the run's settings end at, against the step its checkpoint is at.

Lowered below the checkpoint's step, ``train.max_steps`` (or ``train.epochs``, when the steps come from the epochs)
trained nothing, yet the run's config.yaml recorded a schedule that did not produce it (step 400 of 30). The steps
an epoch are what the run recorded in run.json when it started (``steps_per_epoch``: the data, micro-batch,
accumulation and processes a resume may not change decide them), so no data is read to count them. ``dsft train``
refuses such a resume before torch loads (:func:`check_resume_steps`, on the checkpoint the resume would pick,
writing nothing); ``run_training`` refuses it again on the checkpoint it resolved, for a library caller, and once
its Trainer has counted the steps an epoch, for a run that recorded none (written before dsft recorded them).
"""

from __future__ import annotations

import math
from pathlib import Path

from dsft.config import TrainConfig
from dsft.errors import DsftError
from dsft.training.checkpointing import checkpoint_step, resumed_past
from dsft.training.rundir import RunDir


def last_step(train: TrainConfig, steps_per_epoch: int | None) -> int | None:
    """The step a run with these settings ends at: ``train.max_steps``, or the epochs times the steps an epoch,
    rounded up as transformers' Trainer rounds them; None when it comes from the epochs and those are not known.

    >>> last_step(TrainConfig(max_steps=30), None), last_step(TrainConfig(epochs=1.5), 5)
    (30, 8)
    >>> last_step(TrainConfig(), None) is None  # from the epochs, whose steps are not known
    True
    """
    if train.max_steps > 0:
        return train.max_steps
    return math.ceil(train.epochs * steps_per_epoch) if steps_per_epoch else None


def recorded_steps_per_epoch(checkpoint: Path | str) -> int | None:
    """The optimizer steps an epoch that the run holding ``checkpoint`` recorded, or None (no run around it, or a
    run that recorded none)."""
    run = RunDir.find(checkpoint)
    steps = run.recorded_info().get("steps_per_epoch") if run is not None else None
    return steps if isinstance(steps, int) and steps > 0 else None


def check_steps_left(checkpoint: Path, step: int, train: TrainConfig, steps_per_epoch: int | None) -> None:
    """Refuse a resume whose settings end before the step its checkpoint is at. Equal is allowed: it ends the run at
    that checkpoint (final/ from it). Steps from the epochs are compared only where the steps an epoch are known.

    >>> check_steps_left(Path("checkpoint-400"), 400, TrainConfig(max_steps=400), None)
    >>> check_steps_left(Path("checkpoint-400"), 400, TrainConfig(epochs=2), None)
    >>> check_steps_left(Path("checkpoint-400"), 400, TrainConfig(max_steps=30), None)
    Traceback (most recent call last):
    ...
    dsft.errors.DsftError: --resume: checkpoint-400 is at step 400, past the train.max_steps 30 asked for: a resume cannot take steps back, and the run would record a schedule that did not produce it; pass train.max_steps=400 to end the run at this checkpoint, or more to go on, or start a new --out directory
    >>> check_steps_left(Path("checkpoint-400"), 400, TrainConfig(epochs=2), 150)
    Traceback (most recent call last):
    ...
    dsft.errors.DsftError: --resume: checkpoint-400 is at step 400, past the 300 steps train.epochs 2 asks for (150 steps an epoch): a resume cannot take steps back, and the run would record a schedule that did not produce it; pass train.epochs=3 or more to go on, or train.max_steps=400 to end the run at this checkpoint, or start a new --out directory
    """
    last = last_step(train, steps_per_epoch)
    if last is None or last >= step:
        return
    if train.max_steps > 0:
        asked, advice = (f"the train.max_steps {last} asked for",
                         f"pass train.max_steps={step} to end the run at this checkpoint, or more to go on")
    else:
        assert steps_per_epoch is not None  # last_step knew the steps from the epochs
        epochs = math.ceil(step / steps_per_epoch)  # whole epochs that reach the checkpoint
        asked = (f"the {last} step{'s' if last != 1 else ''} train.epochs {train.epochs:g} asks for "
                 f"({steps_per_epoch} steps an epoch)")
        advice = (f"pass train.epochs={epochs} to end the run at this checkpoint, or more to go on"
                  if epochs * steps_per_epoch == step else
                  f"pass train.epochs={epochs} or more to go on, or train.max_steps={step} to end the run at this "
                  "checkpoint")
    raise DsftError(f"--resume: {checkpoint.name} is at step {step}, past {asked}: a resume cannot take steps back, "
                    f"and the run would record a schedule that did not produce it; {advice}, or start a new --out "
                    "directory", job_wide=True)  # every process reads the same step


def check_resume_steps(resume: str | None, run_dir: Path, train: TrainConfig) -> None:
    """:func:`check_steps_left` on the checkpoint ``--resume`` picks in ``run_dir``, before anything loads."""
    if resume is None:
        return
    steps_per_epoch = recorded_steps_per_epoch(run_dir if resume == "auto" else resume)  # the checkpoint's run
    last = last_step(train, steps_per_epoch)
    checkpoint = resumed_past(resume, RunDir(run_dir).checkpoint_root, last) if last is not None else None
    if checkpoint is not None:
        check_steps_left(checkpoint, checkpoint_step(checkpoint), train, steps_per_epoch)
