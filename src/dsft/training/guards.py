"""Run guards any transformers or TRL Trainer can take on: put :class:`RunGuards` first in its bases.

>>> from trl import DPOTrainer                                    # doctest: +SKIP
>>> class GuardedDPO(RunGuards, DPOTrainer): ...                 # doctest: +SKIP
>>> trainer = GuardedDPO(model=..., args=..., token_counter=counter,
...                      callbacks=monitoring_callbacks(run_dir, counter))   # doctest: +SKIP

(:func:`with_run_guards` builds that class.) The guards:

1. **NaN stop**: a non-finite loss, or a non-finite gradient norm (the norm the clipper computes anyway),
   raises :class:`NonFiniteLossError` *before* the optimizer step that would spread it into the weights.
   The micro-batches' losses stay on the device and are read back once, with the gradient norm, before
   that step: a read per micro-batch would make the host wait for the GPU after every backward, and the
   next micro-batch's kernels could not be queued while the last one's still run. Under DeepSpeed the engine
   steps inside the backward of the step's last micro-batch, before the Trainer sees the norm, so the losses
   are read in that micro-batch's ``compute_loss``, before its backward; the norm can only be read after the
   engine's step, and the message says whether DeepSpeed skipped that step (it does wherever it computes the
   norm) or had already applied it. Each rank's loss is its
   own (the Trainer does not reduce it), so under a launcher every rank's verdict is gathered with that read
   (one collective of ``WORLD_SIZE`` numbers per step): every rank stops at the same step with the same
   message, which names the ranks, and none goes on to an optimizer step the others refused. The gradient
   norm is the whole job's already (gradients are all-reduced, or the norm of sharded ones is), and so is the
   weights check below: the error is job-wide, said once per node.
2. **Finite checkpoints**: the trainable weights are checked before every checkpoint (and, in the
   recipe, before ``final/``); an update that left a NaN or an infinity is never written, so the newest
   checkpoint on disk is always a finite, last good state.
3. **Stall flag**: a gradient norm of exactly 0 for ``zero_grad_steps`` steps in a row (saturated or
   dead weights) is recorded in :attr:`RunGuards.flags` and logged; the run reports ``stalled``.
4. **Atomic checkpoints**: each ``checkpoint-N`` is written under ``.staging/`` with a manifest and
   renamed into place (see checkpointing.py), so a run killed mid-save never leaves a half-written one.
5. **Token counting**: non-pad and supervised tokens per micro-batch (kept on the device like the losses),
   summed over ranks once per log,
   and logged with the loss (``tokens``, ``supervised_tokens``, ``tokens_per_s``, ``elapsed_s``), so the
   trainer state's log_history can rebuild metrics.jsonl. Batches without ``labels`` (e.g. preference
   pairs) are counted by overriding :meth:`RunGuards.count_batch_tokens`.
6. **Tied weights on reload**: a resumed or best-restored checkpoint that holds a tied weight once (the
   head of a model with tied embeddings) is not reported as missing it (:class:`TiedWeightLoadHooks`).

metrics.jsonl, TensorBoard and loss.png come from the callbacks of
:func:`dsft.training.monitoring.monitoring_callbacks`, which read the same token counter.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from dsft.errors import DsftError
from dsft.training.checkpointing import list_checkpoints
from dsft.training.collators import REAL_TOKENS_KEY
from dsft.training.loss import IGNORE_INDEX
from dsft.training.monitoring import TokenCounter
from dsft.training.ranks import warn_for_job
from dsft.training.trainer_hooks import (
    AtomicCheckpointHooks,
    GradNormHooks,
    TiedWeightLoadHooks,
)

log = logging.getLogger(__name__)

NAN_ADVICE = [
    "lower train.lr (or raise train.warmup_ratio)",
    "keep train.max_grad_norm > 0 to clip gradients",
    "on GPU use bf16 rather than fp16 (train.precision)",
    "resume with: dsft train CONFIG --out RUN_DIR --resume auto (after changing the config with --set)",
]


class NonFiniteLossError(DsftError):
    """The training loss, the gradient norm or a weight became NaN or infinite (on any rank: every rank stops)."""

    job_wide = True  # each check below gathers its verdict from every rank before raising


def non_finite_parameters(model: Any) -> list[str]:
    """Names of trainable parameters holding a NaN or an infinity (on this rank).

    A parameter DeepSpeed ZeRO-3 partitions is empty outside its module's forward; this rank's share of it is its
    ``ds_tensor``, which is what is checked (each rank checks its own share).
    """
    return [name for name, p in model.named_parameters()
            if p.requires_grad and not bool(torch.isfinite(getattr(p, "ds_tensor", p)).all())]


def first_non_finite(values: torch.Tensor) -> torch.Tensor:
    """The first NaN or infinity in a 1-d tensor, or 0 where every value is finite: a 0-d tensor on its device,
    not read back.

    >>> first_non_finite(torch.tensor([1.0, float("inf"), float("nan")])), first_non_finite(torch.tensor([2.0]))
    (tensor(inf), tensor(0.))
    """
    bad = ~torch.isfinite(values)
    return torch.where(bad.any(), values[bad.int().argmax()], torch.zeros((), dtype=values.dtype, device=values.device))


def count_real_tokens(batch: dict[str, Any], sequence_parallel: int = 1) -> float | torch.Tensor:
    """Non-padding tokens in a batch (a 0-d tensor on the batch's device where a mask is summed: not read back).

    Padded batches carry an attention mask; packed ones carry their count (``num_real_tokens``) from the
    collator; anything else counts every input id. Under sequence parallelism every rank of a group sees
    the count of the whole row it holds a shard of, so each rank contributes 1/``sequence_parallel`` of it
    (the sum over ranks is exact).
    """
    if "attention_mask" in batch:
        return batch["attention_mask"].sum()
    if REAL_TOKENS_KEY in batch:
        return int(batch[REAL_TOKENS_KEY]) / sequence_parallel
    return int(batch["input_ids"].numel())


class RunGuards(AtomicCheckpointHooks, GradNormHooks, TiedWeightLoadHooks):
    """NaN stop, finite and atomic checkpoints, the stall flag and token counting for the Trainer class it is
    mixed into.

    Takes two keyword arguments of its own, ``token_counter`` (shared with the monitoring callbacks) and
    ``zero_grad_steps`` (0 = no stall flag); everything else goes to the Trainer.
    """

    def __init__(self, *args: Any, token_counter: TokenCounter | None = None, zero_grad_steps: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token_counter = token_counter or TokenCounter()
        # This rank's (real, supervised) tokens since the last log (numbers or 0-d device tensors, read back
        # once per log); summed over ranks when logging.
        self._unlogged_tokens: list[Any] = [0, 0]
        # This optimizer step's micro-batch losses, on the device until check_step_losses reads them.
        self._step_losses: list[torch.Tensor] = []
        # Under DeepSpeed: True while the micro-batch whose backward steps the engine is in training_step, until
        # its compute_loss has checked the step's losses; then _step_losses_checked until check_grad_norm.
        self._check_losses_in_compute_loss = False
        self._step_losses_checked = False
        self.zero_grad_steps = zero_grad_steps
        self._zero_grad_streak = 0
        self.flags: list[str] = []  # problems that did not stop the run but must be reported (run.json)
        # The learning rate this optimizer step uses, read before its first micro-batch (see log()).
        self._step_learning_rate: float | None = None

    def count_batch_tokens(self, inputs: dict[str, Any]) -> tuple[Any, Any] | None:
        """``(non-pad tokens, supervised tokens)`` of one micro-batch on this rank, as numbers or 0-d tensors
        on the batch's device (summed, never read back here); None: not countable."""
        labels = inputs.get("labels", inputs.get("shift_labels"))
        if labels is None:
            return None
        sequence_parallel = getattr(self, "sequence_parallel", 1)
        return count_real_tokens(inputs, sequence_parallel), labels.ne(IGNORE_INDEX).sum()

    def add_unlogged_tokens(self, real: Any, supervised: Any) -> None:
        """Add one micro-batch's counts (numbers or 0-d device tensors; not in place, so an integer tensor
        may meet a fractional sequence-parallel share)."""
        self._unlogged_tokens = [self._unlogged_tokens[0] + real, self._unlogged_tokens[1] + supervised]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add every rank's token counts to the counter, then log (the Trainer logs on all ranks at once)."""
        if self.args.world_size > 1:  # type: ignore[attr-defined]
            # One collective per log: exact global counts, also when ranks' batches differ (SP shards).
            device = self.args.device  # type: ignore[attr-defined]
            summed = torch.stack([torch.as_tensor(c, dtype=torch.float64, device=device)
                                  for c in self._unlogged_tokens])
            torch.distributed.all_reduce(summed)
            counts = summed.tolist()
        else:
            counts = [float(c) for c in self._unlogged_tokens]  # the counts' one read back per log
        self.token_counter.add(round(counts[0]), round(counts[1]))
        self._unlogged_tokens = [0, 0]
        if "loss" in logs:  # in the log itself, so the checkpoint's log_history can rebuild metrics.jsonl
            logs = {**logs, **self.token_counter.totals()}
        if "learning_rate" in logs and self._step_learning_rate is not None:
            logs = {**logs, "learning_rate": self._step_learning_rate}
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    def _steps_inside_backward(self) -> bool:
        """Whether the optimizer steps inside the backward of a step's last micro-batch, before the Trainer's own
        step code runs: under DeepSpeed, accelerate's backward calls the engine's ``step()`` (optimizer and
        scheduler) there. Elsewhere the Trainer steps after every micro-batch's backward, once it has read the
        gradient norm."""
        return bool(getattr(self, "is_deepspeed_enabled", False))

    def _note_step_learning_rate(self) -> None:
        """Under DeepSpeed, read the rate the coming optimizer step uses. The scheduler steps inside the backward
        of a step's last micro-batch (:meth:`_steps_inside_backward`), so the rate the Trainer reads after it is
        the next step's (metrics.jsonl showed each step's rate one step early: 7.5e-4 where 1e-3 was used).
        Elsewhere the Trainer reads it before stepping the scheduler, which is this same value."""
        scheduler = getattr(self, "lr_scheduler", None)
        if not self._steps_inside_backward() or scheduler is None:
            return
        try:
            self._step_learning_rate = float(scheduler.get_last_lr()[0])
        except AssertionError:  # DeepSpeed's fp16 loss-scale warm-up: no step yet; the Trainer logs 0 then
            self._step_learning_rate = None

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        if not self._step_losses:  # the step's first micro-batch (check_step_losses empties the list per step)
            self._note_step_learning_rate()
        counted = self.count_batch_tokens(inputs)
        if counted is not None:
            self.add_unlogged_tokens(*counted)
        # The backward of this micro-batch steps the optimizer: its compute_loss checks the step's losses first.
        self._check_losses_in_compute_loss = (self._steps_inside_backward()
                                              and self.accelerator.sync_gradients)  # type: ignore[attr-defined]
        try:
            loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        finally:
            self._check_losses_in_compute_loss = False
        if not self._step_losses_checked:
            self._step_losses.append(loss.detach())
        return loss

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """The Trainer's loss; in the micro-batch whose backward steps the DeepSpeed engine, the step's losses are
        checked here, before that backward (after it, a non-finite loss would already be in the weights)."""
        result = super().compute_loss(model, inputs, *args, **kwargs)  # type: ignore[misc]
        if self._check_losses_in_compute_loss:
            self._check_losses_in_compute_loss = False
            loss = result[0] if isinstance(result, tuple) else result
            self._step_losses.append(loss.detach())
            self._step_losses_checked = True
            self.check_step_losses()
        return result

    def check_step_losses(self) -> None:
        """Stop on a non-finite loss among this step's micro-batches on any rank (one read back for all of them)."""
        losses, self._step_losses = self._step_losses, []
        world_size = self.args.world_size  # type: ignore[attr-defined]
        if not losses and world_size == 1:
            return
        # Each rank puts its first non-finite loss (0: none) in its own slot; the sum over ranks holds them all.
        verdicts = torch.zeros(world_size, device=self.args.device)  # type: ignore[attr-defined]
        if losses:
            rank = self.args.process_index if world_size > 1 else 0  # type: ignore[attr-defined]
            stacked = torch.stack([loss.float().reshape(()) for loss in losses])
            verdicts[rank] = first_non_finite(stacked).to(verdicts.device)
        if world_size > 1:  # every rank calls this once per optimizer step, so every rank meets here
            torch.distributed.all_reduce(verdicts)
        bad = [(rank, value) for rank, value in enumerate(verdicts.tolist()) if not math.isfinite(value)]
        if bad:
            step = self.state.global_step + 1  # type: ignore[attr-defined]
            where = ""
            if world_size > 1:
                where = f" on rank{'s' if len(bad) > 1 else ''} {', '.join(str(rank) for rank, _ in bad)}"
            raise NonFiniteLossError(
                f"training loss became {bad[0][1]}{where} at optimizer step {step}; the run stopped before that "
                f"step changed any weight, so {self._last_good()}", self._nan_advice(),
            )

    def check_grad_norm(self, grad_norm: Any) -> None:
        """Stop on a non-finite loss or gradient norm (before the optimizer step, DeepSpeed's aside: see
        :meth:`_grad_norm_step_outcome`); count steps with a zero norm."""
        if self._step_losses_checked:  # already, before the backward that stepped the DeepSpeed engine
            self._step_losses_checked = False
        else:
            self.check_step_losses()
        if grad_norm is None:
            return
        value = float(grad_norm)
        step = self.state.global_step + 1  # type: ignore[attr-defined]
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"gradient norm became {value} at optimizer step {step}; {self._grad_norm_step_outcome()}, so "
                f"{self._last_good()}", self._nan_advice(),
            )
        self._zero_grad_streak = self._zero_grad_streak + 1 if value == 0.0 else 0
        if self.zero_grad_steps and self._zero_grad_streak == self.zero_grad_steps:
            flag = (f"the gradient norm was 0 for {self.zero_grad_steps} steps in a row (steps "
                    f"{step - self.zero_grad_steps + 1}-{step}): the run is not learning (saturated or dead "
                    "weights, e.g. a learning rate far too high); lower train.lr and start again")
            self.flags.append(flag)
            warn_for_job(log, flag)  # the norm is the whole job's: every rank counts the same streak

    def _grad_norm_step_outcome(self) -> str:
        """What became of the optimizer step whose gradient norm is non-finite, as the stop message says it.

        Under DeepSpeed the norm exists only after the engine's step (:meth:`_steps_inside_backward`); the engine
        says whether it applied it. DeepSpeed 0.19.8 skips a step whose norm is non-finite at every stage and
        precision, except that ZeRO-1/2 in bf16 with ``bf16.check_grad_overflow`` off (on by default) applies it;
        ZeRO-0 in fp32 computes no norm (None: nothing to check here).
        """
        if not self._steps_inside_backward():
            return "the run stopped before that step changed any weight"
        engine = getattr(self, "model_wrapped", None)
        if not getattr(engine, "was_step_applied", lambda: True)():
            return "DeepSpeed skipped that step and changed no weight"
        return ("DeepSpeed had already applied that step (it steps inside the last micro-batch's backward, and at "
                "this ZeRO stage and precision it does not skip a step whose gradients overflow): the weights it "
                "left may not be finite, and the run stopped before saving them")

    def check_finite_weights(self, what: str) -> None:
        """Refuse to write ``what`` when a trainable weight is NaN or infinite (every rank checks its own)."""
        bad = non_finite_parameters(self.model)  # type: ignore[attr-defined]
        count = torch.tensor(float(len(bad)), device=self.args.device)  # type: ignore[attr-defined]
        if self.args.world_size > 1:  # type: ignore[attr-defined]
            torch.distributed.all_reduce(count)
        if count.item():
            shown = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
            raise NonFiniteLossError(
                f"weights became non-finite by optimizer step {self.state.global_step} "  # type: ignore[attr-defined]
                f"({int(count.item())} tensors, e.g. {shown or 'on another rank'}); {what} was not written, so "
                f"{self._last_good()}", self._nan_advice(),
            )

    def _checkpoints(self) -> list[Any]:
        output_dir = getattr(self.args, "output_dir", None)  # type: ignore[attr-defined]
        return list_checkpoints(Path(output_dir)) if output_dir else []

    def _last_good(self) -> str:
        """Which checkpoint a stopped run can go back to: the newest on disk, or none yet (a run that blows up
        in its first steps, before the first save)."""
        saved = self._checkpoints()
        if saved:
            return f"{saved[-1].name} (the newest checkpoint) is the last good one"
        return "no checkpoint had been written yet: nothing of the run is worth keeping"

    def _nan_advice(self) -> list[str]:
        if self._checkpoints():
            return NAN_ADVICE
        return NAN_ADVICE[:-1] + ["then run the same command again: with no checkpoint, the run starts over"]


def with_run_guards(trainer_class: type) -> type:
    """``trainer_class`` with :class:`RunGuards` mixed in first (e.g. ``with_run_guards(DPOTrainer)``)."""
    return type(f"Guarded{trainer_class.__name__}", (RunGuards, trainer_class), {})
