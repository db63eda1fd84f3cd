"""A resumed run trains at the configured learning rate: the one part of the resume contract
(:mod:`dsft.training.resume`) that needs a Trainer callback, kept apart so that reading a run directory
(:mod:`dsft.training.rundir`, which checks the contract) does not import transformers.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


def apply_resumed_learning_rate(optimizer: Any, scheduler: Any, lr: float) -> bool:
    """Make the resumed run's schedule the configured one from its first step; returns whether it changed anything.

    A checkpoint's optimizer and scheduler state carry the learning rate the run started with
    (``initial_lr`` of each parameter group, the scheduler's ``base_lrs``) and the learning rate of the next
    step under the old schedule (each group's ``lr``). Loading them silently undoes a ``--set train.lr=...``,
    and a schedule rebuilt for a new length (``train.max_steps``, ``train.epochs``) or shape would only take
    effect from the second resumed step: a cosine run stopped at its last step and resumed with a larger
    ``train.max_steps`` trained its first resumed step at the old schedule's final lr, 0. The peak becomes
    ``lr`` and each group's current lr the rebuilt schedule's value at the checkpoint's step.
    """
    # Under DeepSpeed the Trainer holds accelerate's wrappers: the scheduler's own state is its .scheduler's (the
    # optimizer wrapper hands param_groups through). Without unwrapping, no DeepSpeed resume got the new schedule.
    scheduler = getattr(scheduler, "scheduler", scheduler)
    base_lrs = list(getattr(scheduler, "base_lrs", []))
    if not base_lrs:
        return False
    before = [group["lr"] for group in optimizer.param_groups]
    lambdas = getattr(scheduler, "lr_lambdas", None)
    scheduler.base_lrs = [lr] * len(base_lrs)
    for index, group in enumerate(optimizer.param_groups):
        group["initial_lr"] = lr
        if lambdas is not None:  # LambdaLR (every schedule the Trainer builds): lr = peak * factor(step)
            group["lr"] = lr * lambdas[index](scheduler.last_epoch)
        elif base_lrs[index] != lr:
            group["lr"] = group["lr"] * lr / base_lrs[index]
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return before != [group["lr"] for group in optimizer.param_groups] or base_lrs != scheduler.base_lrs


class ResumedLearningRate(TrainerCallback):
    """On a resumed run, make the configured ``train.lr`` and schedule the ones the first resumed step trains
    with (see :func:`apply_resumed_learning_rate`); the Trainer has loaded the checkpoint's optimizer and scheduler
    state by the time ``on_train_begin`` runs."""

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, lr_scheduler: Any = None,
                       **kw: Any) -> None:
        if state.global_step > 0 and optimizer is not None and lr_scheduler is not None:
            apply_resumed_learning_rate(optimizer, lr_scheduler, args.learning_rate)
