"""A resume cannot take steps back: the step the run's settings end at, against the step its checkpoint is at.

Lowered below the checkpoint's step, ``train.max_steps`` trained nothing, yet the run's config.yaml recorded a
schedule that did not produce it (step 400 of 30). ``dsft train`` refuses that before torch loads
(:func:`check_resume_steps`, on the checkpoint the resume would pick, writing nothing); ``run_training``
refuses it again on the checkpoint it resolved, for a library caller.
"""

from __future__ import annotations

from pathlib import Path

from dsft.errors import DsftError
from dsft.training.checkpointing import checkpoint_step, resumed_past
from dsft.training.rundir import RunDir


def check_steps_left(checkpoint: Path, step: int, max_steps: int) -> None:
    """Refuse a resume whose ``train.max_steps`` is below the step its checkpoint is at. Equal is allowed: it
    ends the run at that checkpoint (final/ from it). ``max_steps`` <= 0 (derived from epochs) is not compared.

    >>> check_steps_left(Path("checkpoint-400"), 400, 400)
    >>> check_steps_left(Path("checkpoint-400"), 400, 30)
    Traceback (most recent call last):
    ...
    dsft.errors.DsftError: --resume: checkpoint-400 is at step 400, past the train.max_steps 30 asked for: a resume cannot take steps back, and the run would record a schedule that did not produce it; pass train.max_steps=400 to end the run at this checkpoint, or more to go on, or start a new --out directory
    """
    if 0 < max_steps < step:
        raise DsftError(f"--resume: {checkpoint.name} is at step {step}, past the train.max_steps {max_steps} asked "
                        "for: a resume cannot take steps back, and the run would record a schedule that did not "
                        f"produce it; pass train.max_steps={step} to end the run at this checkpoint, or more to go "
                        "on, or start a new --out directory", job_wide=True)  # every process reads the same step


def check_resume_steps(resume: str | None, run_dir: Path, max_steps: int) -> None:
    """:func:`check_steps_left` on the checkpoint ``--resume`` picks in ``run_dir``, before anything loads."""
    if resume is None or max_steps <= 0:
        return
    checkpoint = resumed_past(resume, RunDir(run_dir).checkpoint_root, max_steps)
    if checkpoint is not None:
        check_steps_left(checkpoint, checkpoint_step(checkpoint), max_steps)
