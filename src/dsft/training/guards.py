"""Run guards any transformers or TRL Trainer can take on: put :class:`RunGuards` first in its bases.

>>> from trl import DPOTrainer                                    # doctest: +SKIP
>>> class GuardedDPO(RunGuards, DPOTrainer): ...                 # doctest: +SKIP
>>> trainer = GuardedDPO(model=..., args=..., token_counter=counter,
...                      callbacks=monitoring_callbacks(run_dir, counter))   # doctest: +SKIP

(:func:`with_run_guards` builds that class.) The guards:

1. **NaN stop**: a non-finite loss raises :class:`NonFiniteLossError` *before* the optimizer step that
   would spread it into the weights, so the newest checkpoint on disk is the last good state.
2. **Atomic checkpoints**: each ``checkpoint-N`` is written under ``.staging/`` and renamed into place
   (see checkpointing.py), so a run killed mid-save never leaves a half-written checkpoint.
3. **Token counting**: non-pad and supervised tokens per micro-batch, summed over ranks once per log,
   for metrics.jsonl (``tokens``, ``supervised_tokens``, ``tokens_per_s``). Batches without ``labels``
   (e.g. preference pairs) are counted by overriding :meth:`RunGuards.count_batch_tokens`.

metrics.jsonl, TensorBoard and loss.png come from the callbacks of
:func:`dsft.training.monitoring.monitoring_callbacks`, which read the same token counter.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dsft.errors import DsftError
from dsft.training.collators import REAL_TOKENS_KEY
from dsft.training.loss import IGNORE_INDEX
from dsft.training.monitoring import TokenCounter
from dsft.training.trainer_hooks import AtomicCheckpointHooks

NAN_ADVICE = [
    "lower train.lr (or raise train.warmup_ratio)",
    "keep train.max_grad_norm > 0 to clip gradients",
    "on GPU use bf16 rather than fp16 (train.precision)",
    "resume with: dsft train CONFIG --out RUN_DIR --resume auto (after changing the config with --set)",
]


class NonFiniteLossError(DsftError):
    """The training loss became NaN or infinite."""


def count_real_tokens(batch: dict[str, Any], sequence_parallel: int = 1) -> float:
    """Non-padding tokens in a batch.

    Padded batches carry an attention mask; packed ones carry their count (``num_real_tokens``) from the
    collator; anything else counts every input id. Under sequence parallelism every rank of a group sees
    the count of the whole row it holds a shard of, so each rank contributes 1/``sequence_parallel`` of it
    (the sum over ranks is exact).
    """
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    if REAL_TOKENS_KEY in batch:
        return int(batch[REAL_TOKENS_KEY]) / sequence_parallel
    return int(batch["input_ids"].numel())


class RunGuards(AtomicCheckpointHooks):
    """NaN stop, atomic checkpoints and token counting for the Trainer class it is mixed into.

    Takes one keyword argument of its own, ``token_counter`` (shared with the monitoring callbacks);
    everything else goes to the Trainer.
    """

    def __init__(self, *args: Any, token_counter: TokenCounter | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token_counter = token_counter or TokenCounter()
        # This rank's (real, supervised) tokens since the last log; summed over ranks when logging.
        self._unlogged_tokens = [0.0, 0.0]

    def count_batch_tokens(self, inputs: dict[str, Any]) -> tuple[float, int] | None:
        """``(non-pad tokens, supervised tokens)`` of one micro-batch on this rank; None: not countable."""
        labels = inputs.get("labels", inputs.get("shift_labels"))
        if labels is None:
            return None
        sequence_parallel = getattr(self, "sequence_parallel", 1)
        return count_real_tokens(inputs, sequence_parallel), int(labels.ne(IGNORE_INDEX).sum())

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add every rank's token counts to the counter, then log (the Trainer logs on all ranks at once)."""
        counts = self._unlogged_tokens
        if self.args.world_size > 1:  # type: ignore[attr-defined]
            # One collective per log: exact global counts, also when ranks' batches differ (SP shards).
            summed = torch.tensor(counts, dtype=torch.float64, device=self.args.device)  # type: ignore[attr-defined]
            torch.distributed.all_reduce(summed)
            counts = summed.tolist()
        self.token_counter.add(round(counts[0]), round(counts[1]))
        self._unlogged_tokens = [0.0, 0.0]
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        counted = self.count_batch_tokens(inputs)
        if counted is not None:
            self._unlogged_tokens[0] += counted[0]
            self._unlogged_tokens[1] += counted[1]
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        value = float(loss.detach())
        if not math.isfinite(value):
            step = self.state.global_step + 1  # type: ignore[attr-defined]
            raise NonFiniteLossError(
                f"training loss became {value} at optimizer step {step}; the run stopped before that step "
                "changed any weight, so the newest checkpoint is the last good one",
                NAN_ADVICE,
            )
        return loss


def with_run_guards(trainer_class: type) -> type:
    """``trainer_class`` with :class:`RunGuards` mixed in first (e.g. ``with_run_guards(DPOTrainer)``)."""
    return type(f"Guarded{trainer_class.__name__}", (RunGuards, trainer_class), {})
