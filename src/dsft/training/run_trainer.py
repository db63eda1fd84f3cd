"""The Trainer a run uses: DsftTrainer (fast loss) plus three run-level guarantees.

1. A non-finite loss stops the run *before* the optimizer step that would spread it into the weights,
   so the newest checkpoint on disk is the last good state.
2. Checkpoints are staged and renamed into place (see checkpointing.py).
3. Tokens seen (non-pad and supervised) are counted for metrics.jsonl.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from typing import Any

import torch

from dsft.errors import DsftError
from dsft.training.checkpointing import save_checkpoint_atomically
from dsft.training.monitoring import TokenCounter
from dsft.training.collators import REAL_TOKENS_KEY
from dsft.training.trainer import DsftTrainer


class NonFiniteLossError(DsftError):
    """The training loss became NaN or infinite."""


def count_real_tokens(batch: dict[str, Any], sequence_parallel: int = 1) -> float:
    """Non-padding tokens in a batch.

    Padded batches carry an attention mask; packed ones carry their count (``num_real_tokens``) from the
    collator. Under sequence parallelism every rank of a group sees the count of the whole row it holds a
    shard of, so each rank contributes 1/``sequence_parallel`` of it (the sum over ranks is exact).
    """
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch[REAL_TOKENS_KEY]) / sequence_parallel


class RunTrainer(DsftTrainer):
    def __init__(self, *args: Any, token_counter: TokenCounter | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token_counter = token_counter or TokenCounter()
        # This rank's (real, supervised) tokens since the last log; summed over ranks when logging.
        self._unlogged_tokens = [0.0, 0.0]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add every rank's token counts to the counter, then log (the Trainer logs on all ranks at once)."""
        counts = self._unlogged_tokens
        if self.args.world_size > 1:
            # One collective per log: exact global counts, also when ranks' batches differ (SP shards).
            summed = torch.tensor(counts, dtype=torch.float64, device=self.args.device)
            torch.distributed.all_reduce(summed)
            counts = summed.tolist()
        self.token_counter.add(round(counts[0]), round(counts[1]))
        self._unlogged_tokens = [0.0, 0.0]
        super().log(logs, *args, **kwargs)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        labels = inputs.get("labels", inputs.get("shift_labels"))
        if labels is not None:
            self._unlogged_tokens[0] += count_real_tokens(inputs, self._sequence_parallel)
            self._unlogged_tokens[1] += int(labels.ne(-100).sum())
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            step = self.state.global_step + 1
            raise NonFiniteLossError(
                f"training loss became {value} at optimizer step {step}; the run stopped before that step "
                "changed any weight, so the newest checkpoint is the last good one",
                [
                    "lower train.lr (or raise train.warmup_ratio)",
                    "keep train.max_grad_norm > 0 to clip gradients",
                    "on GPU use bf16 rather than fp16 (train.precision)",
                    "resume with: dsft train CONFIG --out RUN_DIR --resume auto (after changing the config "
                    "with --set)",
                ],
            )
        return loss

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        with in_memory_key_layout(self.model):
            save_checkpoint_atomically(self, model, trial, super()._save_checkpoint)


@contextlib.contextmanager
def in_memory_key_layout(model: Any) -> Iterator[None]:
    """Save checkpoints with the model's own parameter names (e.g. fused MoE experts).

    transformers 5 saves a model in its original hub layout by default (DeepSeek-V3's fused experts are
    split back into ``experts.N.*_proj``), but the Trainer restores checkpoints (resume, load-best) with a
    plain ``load_state_dict(strict=False)``, which silently skips those keys: a resumed or best-restored
    full fine-tune of an MoE model would keep the wrong expert weights. Intermediate checkpoints therefore
    keep the in-memory names (``from_pretrained`` loads them too); ``final/`` keeps the hub layout.
    """
    from transformers import PreTrainedModel

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(target, PreTrainedModel) or hasattr(model, "peft_config"):
        yield
        return
    original = target.save_pretrained
    target.save_pretrained = functools.partial(original, save_original_format=False)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del target.save_pretrained  # back to the class method
