"""``train.save_steps`` where the Trainer saves only per epoch.

Its own module: :mod:`dsft.training.checkpointing` is read by the checks that refuse a run before torch loads,
and a Trainer callback imports torch (through transformers' trainer utilities).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class SaveEveryNSteps(TrainerCallback):
    """``train.save_steps`` where the Trainer saves per epoch: evaluation at every epoch end with
    ``eval.load_best`` makes transformers save per epoch (the best checkpoint needs the save and evaluation
    strategies to match), which would leave a long epoch with no checkpoint to resume from. The epoch-end
    saves stay; these come beside them."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kw: Any) -> TrainerControl:
        if args.save_strategy == "epoch" and args.save_steps >= 1 and state.global_step % int(args.save_steps) == 0:
            control.should_save = True
        return control
