"""A resumed run trains at the configured learning rate: the one part of the resume contract
(:mod:`dsft.training.resume`) that needs a Trainer callback, kept apart so that reading a run directory
(:mod:`dsft.training.rundir`, which checks the contract) does not import transformers.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


def apply_resumed_learning_rate(optimizer: Any, scheduler: Any, lr: float) -> bool:
    """Make ``lr`` the peak learning rate of a resumed run; returns whether it changed anything.

    A checkpoint's optimizer and scheduler state carry the learning rate the run started with
    (``initial_lr`` of each parameter group, the scheduler's ``base_lrs``), and loading them silently
    undoes a ``--set train.lr=...``. The schedule's shape and position are kept; only its peak changes.
    """
    base_lrs = list(getattr(scheduler, "base_lrs", []))
    if not base_lrs or all(base == lr for base in base_lrs):
        return False
    scheduler.base_lrs = [lr] * len(base_lrs)
    lambdas = getattr(scheduler, "lr_lambdas", None)
    for index, group in enumerate(optimizer.param_groups):
        group["initial_lr"] = lr
        if lambdas is not None:  # LambdaLR (every schedule the Trainer builds): lr = peak * factor(step)
            group["lr"] = lr * lambdas[index](scheduler.last_epoch)
        else:
            group["lr"] = group["lr"] * lr / base_lrs[index]
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return True


class ResumedLearningRate(TrainerCallback):
    """On a resumed run, make the configured ``train.lr`` the schedule's peak (see
    :func:`apply_resumed_learning_rate`); the Trainer has loaded the checkpoint's optimizer and scheduler
    state by the time ``on_train_begin`` runs."""

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, lr_scheduler: Any = None,
                       **kw: Any) -> None:
        if state.global_step > 0 and optimizer is not None and lr_scheduler is not None:
            apply_resumed_learning_rate(optimizer, lr_scheduler, args.learning_rate)
