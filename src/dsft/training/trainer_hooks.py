"""Every private part of ``transformers.Trainer`` dsft relies on, in one place, each with why.

transformers offers no public hook for these; they may change in any release, which is why
``pyproject.toml`` pins transformers to the range the test suite passes on and
``tests/training/test_trainer_hooks.py`` checks that each name in :data:`PRIVATE_HOOKS` still exists.
Nothing outside this module overrides, sets or patches a private Trainer member.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, TrainerState

from dsft.templates.base import IGNORE_INDEX
from dsft.training.checkpointing import save_checkpoint_atomically

# name -> why dsft needs it. Methods are overridden, attributes set (see the functions below).
PRIVATE_HOOKS: dict[str, str] = {
    "_save_checkpoint": "the only method that writes checkpoint-N; wrapping it stages the whole directory and "
                        "renames it into place (atomic checkpoints)",
    "_get_num_items_in_batch": "counts the supervised labels of the accumulation window (all ranks) for the "
                               "global loss normalisation; sequence-parallel shards carry shift_labels, which "
                               "the stock count misses",
    "_loss_shifts_labels": "tells the stock count that labels are unshifted (count labels[..., 1:]), as "
                           "dsft's loss shifts them itself",
    "_prepare_inputs": "called (not overridden) by DsftTrainer.prediction_step: moves an evaluation batch to "
                       "the device the way the Trainer's own prediction_step does (no public equivalent)",
    "_get_grad_norm": "returns the gradient norm the clipper computed (computed even with clipping off), just "
                      "before the optimizer step: the one cheap place to stop on a non-finite gradient before it "
                      "reaches the weights, and to notice gradients that stay exactly zero",
    "_load_from_checkpoint": "called (not overridden) when a resume has no step left to train: the Trainer's "
                             "one loader for full weights, sharded files and PEFT adapters of a checkpoint",
    "_issue_warnings_after_load": "the one place the Trainer reports a resumed or best checkpoint's missing keys; "
                                  "it takes a tied weight that save_pretrained leaves out (lm_head.weight of "
                                  "SmolLM2, Qwen2.5-0.5B..3B, Llama-3.2) for a missing one",
}
# Public Trainer attributes dsft sets that the documentation does not describe as settable.
UNDOCUMENTED_ATTRIBUTES: dict[str, str] = {
    "model_accepts_loss_kwargs": "True makes the Trainer pass num_items_in_batch to compute_loss whatever the "
                                 "model's forward signature says",
}
# ``save_pretrained(save_original_format=...)``: not private, but patched on the instance while a
# checkpoint is written (see in_memory_key_layout).
SAVE_ORIGINAL_FORMAT_KWARG = "save_original_format"


def prepare_inputs(trainer: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """A batch on the trainer's device, prepared as the Trainer prepares its own (``_prepare_inputs``)."""
    return trainer._prepare_inputs(inputs)


def declare_supervised_token_loss(trainer: Any) -> None:
    """Make the Trainer count supervised (shifted) labels and pass the count to ``compute_loss``."""
    trainer.model_accepts_loss_kwargs = True
    trainer._loss_shifts_labels = True


class AtomicCheckpointHooks:
    """Mixin (before the Trainer class in the bases): checkpoints are staged and renamed into place, and
    never written with a non-finite weight (``check_finite_weights`` of the class it is mixed into)."""

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        check = getattr(self, "check_finite_weights", None)
        if check is not None:
            check(f"checkpoint-{self.state.global_step}")  # type: ignore[attr-defined]
        with in_memory_key_layout(self.model):  # type: ignore[attr-defined]
            save_checkpoint_atomically(self, model, trial, super()._save_checkpoint)  # type: ignore[misc]


def tied_missing_keys(model: torch.nn.Module, missing: list[str]) -> set[str]:
    """The names in ``missing`` whose parameter (or buffer) is the same tensor as one that was loaded.

    ``save_pretrained`` writes a tied weight once (``lm_head.weight`` is the input embedding's tensor when
    ``tie_word_embeddings`` is set), so loading the checkpoint with ``strict=False`` lists the other name as
    missing although loading the embedding filled it.

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Embedding(4, 2), nn.Linear(2, 4, bias=False))
    >>> model[1].weight = model[0].weight
    >>> sorted(tied_missing_keys(model, ["1.weight"])), sorted(tied_missing_keys(model, ["0.weight", "1.weight"]))
    (['1.weight'], [])
    """
    names_of: dict[int, list[str]] = {}
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        names_of.setdefault(id(tensor), []).append(name)
    missing_names = set(missing)
    return {name for names in names_of.values() if len(names) > 1 and not set(names) <= missing_names
            for name in names if name in missing_names}


class TiedWeightLoadHooks:
    """Mixin: a resumed or best-restored checkpoint is not reported as missing a weight it holds under its tie.

    Without this, every full fine-tune of a model with tied embeddings ended (``eval.load_best``) or resumed
    with transformers' "There were missing keys in the checkpoint model loaded: ['lm_head.weight']", though
    the head is the embedding, which was loaded. A key missing for real is still reported.
    """

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        tied = tied_missing_keys(self.model, list(load_result.missing_keys))  # type: ignore[attr-defined]
        if tied:
            kept = [key for key in load_result.missing_keys if key not in tied]
            load_result = load_result._replace(missing_keys=kept)
        super()._issue_warnings_after_load(load_result)  # type: ignore[misc]


class GradNormHooks:
    """Mixin: hand the clipper's gradient norm to ``check_grad_norm`` before the optimizer step uses it."""

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)  # type: ignore[misc]
        self.check_grad_norm(grad_norm)  # type: ignore[attr-defined]
        return grad_norm


def load_checkpoint_weights(trainer: Any, checkpoint: Path) -> None:
    """Load a checkpoint's weights (the best one's under ``eval.load_best``) and trainer state, without training."""
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    best = trainer.state.best_model_checkpoint
    source = Path(best) if trainer.args.load_best_model_at_end and best and Path(best).is_dir() else checkpoint
    trainer._load_from_checkpoint(str(source))


class ShardedLabelCountHooks:
    """Mixin: the Trainer's supervised-label count, extended to sequence-parallel shards (``shift_labels``).

    Every rank counts the supervised targets of its own shards over the accumulation window; the sum over
    all ranks is then the supervised-token count of the whole global batch, as without SP.
    """

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | int | None:
        if not batch_samples or "labels" in batch_samples[0] or "shift_labels" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)  # type: ignore[misc]
        count = sum(batch["shift_labels"].ne(IGNORE_INDEX).sum() for batch in batch_samples).to(device)
        args = self.args  # type: ignore[attr-defined]
        if args.average_tokens_across_devices and args.world_size > 1:
            count = self.accelerator.gather(count).sum()  # type: ignore[attr-defined]
        return count


@contextlib.contextmanager
def in_memory_key_layout(model: Any) -> Iterator[None]:
    """Save checkpoints with the model's own parameter names (e.g. fused MoE experts).

    transformers 5 saves a model in its original hub layout by default (DeepSeek-V3's fused experts are
    split back into ``experts.N.*_proj``), but the Trainer restores checkpoints (resume, load-best) with a
    plain ``load_state_dict(strict=False)``, which silently skips those keys: a resumed or best-restored
    full fine-tune of an MoE model would keep the wrong expert weights. Intermediate checkpoints therefore
    keep the in-memory names (``from_pretrained`` loads them too); ``final/`` keeps the hub layout.
    """
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(target, PreTrainedModel) or hasattr(model, "peft_config"):
        yield
        return
    original = target.save_pretrained
    target.save_pretrained = functools.partial(original, **{SAVE_ORIGINAL_FORMAT_KWARG: False})  # type: ignore[method-assign]
    try:
        yield
    finally:
        del target.save_pretrained  # back to the class method
