"""DsftTrainer: transformers' Trainer with its loss replaced (``compute_loss``), plus what sequence
parallelism needs (the supervised-label count over shards, from :mod:`dsft.training.trainer_hooks`, and
``training_step`` reporting the SP loss at its true scale), and evaluation's ``prediction_step`` /
``evaluation_loop`` so the validation loss is the mean over supervised tokens like the training loss (the
stock loop averages per-batch means, which moves with the eval batch size).

The Trainer keeps the loop, gradient accumulation, checkpointing, resume and DeepSpeed/FSDP. The loss
differs from the stock one in three ways:

* the model is called with ``use_cache=False`` and without an attention_mask for packed rows, so
  transformers builds the block-causal mask from position_ids (a cache object would disable that);
* the lm_head runs only on supervised positions, in chunks (:mod:`dsft.training.loss`);
* the loss is normalised by ``num_items_in_batch``, the supervised-token count of the whole global
  batch, which the Trainer computes before the accumulation window (summed over the window's
  micro-batches and gathered across ranks when ``average_tokens_across_devices`` is on, the default).

On CPU the tensors autograd saves in the training forward go to a reusable pool
(:mod:`dsft.training.saved_activation_pool`) and glibc's free heap pages are given back a few times per
pass (:mod:`dsft.training.heap_release`): both keep the resident memory near what is in use.

MoE models with a router auxiliary loss (``config.output_router_logits``, e.g. Mixtral/Qwen-MoE) add
``router_aux_loss_coef * aux_loss``. DeepSeek-V3 has none: it balances experts with a bias on the routing
scores (``e_score_correction_bias``), which transformers keeps fixed at its loaded value during training.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from dsft.templates.base import IGNORE_INDEX
from dsft.training.collators import REAL_TOKENS_KEY
from dsft.training.environment import cpu_multiplies_bf16
from dsft.training.heap_release import HeapRelease
from dsft.training.loss import (
    auto_chunk_size,
    resolve_loss_dtype,
    supervised_cross_entropy,
    supervised_cross_entropy_via_module,
)
from dsft.training.lean_lora import use_lean_lora
from dsft.training.ranks import warn_for_node
from dsft.training.saved_activation_pool import SavedActivationPool
from dsft.training.sequence_parallel_mla import ulysses_for_mla
from dsft.training.sequence_parallel_resume import skipping_sequence_parallel
from dsft.training.trainer_hooks import ShardedLabelCountHooks, declare_supervised_token_loss, prepare_inputs

# Inputs that go to the model; everything else the collator adds (labels) stays with the loss.
# Under sequence parallelism the dataloader hands out pre-shifted ``shift_labels`` instead of labels.
_LOSS_ONLY_KEYS = ("labels", "shift_labels", REAL_TOKENS_KEY)

log = logging.getLogger(__name__)


def unwrap_causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The ``*ForCausalLM`` module inside DDP/FSDP/DeepSpeed wrappers and a peft model."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):  # peft: LoRA layers live inside the base model's modules
        model = model.get_base_model()
    return model


def forward_hidden_states(model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
    """Run the whole model (through any DDP/FSDP/peft wrapper, so their hooks fire) and return the
    body's last hidden state, without the lm_head projecting a single position.

    ``logits_to_keep`` = an empty index tensor makes the causal-LM head project zero positions; the
    hidden state is taken from the decoder body with a forward hook.
    """
    causal_lm = unwrap_causal_lm(model)
    body = causal_lm.get_decoder()
    captured: dict[str, torch.Tensor] = {}

    def keep_last_hidden_state(_module: Any, _args: Any, output: Any) -> None:
        captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    extra: dict[str, Any] = {"use_cache": False}
    # Remote-code models without `logits_to_keep` still work; they just compute logits nobody reads.
    if "logits_to_keep" in inspect.signature(causal_lm.forward).parameters:
        extra["logits_to_keep"] = torch.empty(0, dtype=torch.long, device=inputs["input_ids"].device)
    handle = body.register_forward_hook(keep_last_hidden_state)
    try:
        outputs = model(**inputs, **extra)
    finally:
        handle.remove()
    return captured["hidden"], outputs


class WholeWarmupSteps:
    """Training arguments (transformers' or a TRL objective's config) whose warmup ratio rounds down to whole steps.

    transformers rounds ``ratio * steps`` up, so any ratio gives at least one warmup step, and with linear
    warmup the first optimizer step then runs at lr 0: a 3-step run at ratio 0.03 wastes a third of its
    steps. Rounding down keeps warmup for runs long enough to have it (100 steps at 0.03: 3 steps).
    """

    warmup_steps: float

    def get_warmup_steps(self, num_training_steps: int) -> int:
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        return int(num_training_steps * self.warmup_steps)


class DsftTrainingArguments(WholeWarmupSteps, TrainingArguments):
    """TrainingArguments with dsft's warmup rounding (:class:`WholeWarmupSteps`)."""


class DsftTrainer(ShardedLabelCountHooks, Trainer):
    """A Trainer whose loss is the chunked, supervised-token cross-entropy (see module docstring)."""

    # Our loss is already divided by the global supervised-token count: no extra division by the
    # number of accumulation steps.
    loss_is_scaled_for_ga = True

    def __init__(
        self, *args: Any, loss_chunk_size: int | str = "auto", offload_activations: bool = False,
        label_smoothing: float = 0.0, loss_dtype: str = "auto", compact_cpu_memory: bool = True, **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Applied to the training loss only: evaluation loss (and the perplexity derived from it) stays the
        # plain cross-entropy, comparable across runs with and without smoothing.
        self.label_smoothing = float(label_smoothing)
        causal_lm = unwrap_causal_lm(self.model)
        if loss_chunk_size == "auto":
            weight = causal_lm.get_output_embeddings().weight
            vocab = getattr(weight, "ds_shape", weight.shape)[0]  # ZeRO-3 keeps the full shape in ds_shape
            loss_chunk_size = auto_chunk_size(vocab, self.args.device.type)
        self.loss_chunk_size = int(loss_chunk_size)
        # The dtype of the loss's lm_head matmuls (train.loss_dtype), resolved once for this device and head.
        self.loss_compute_dtype = resolve_loss_dtype(loss_dtype, causal_lm.get_output_embeddings().weight)
        if self.loss_compute_dtype == torch.bfloat16 and self.args.device.type == "cpu" and not cpu_multiplies_bf16():
            warn_for_node(log, "train.loss_dtype=bf16: this CPU has no bf16 matrix instructions (AVX512-BF16, AMX), "
                          "so the bf16 lm_head matmuls are emulated and slower than fp32")  # a fact of the machine
        # With gradient checkpointing the tensors autograd saves are the layers' inputs; keeping them in
        # (pinned) CPU memory until backward trades a copy per layer for their GPU memory.
        self.offload_activations = offload_activations
        # CPU (train.compact_cpu_memory): what autograd saves goes to a reusable pool instead of fragmenting
        # glibc's heap, and the heap's free pages are given back a few times a pass (see the two modules) by
        # hooks on the decoder layers that exist while this trainer trains (:meth:`train`).
        compact = compact_cpu_memory and self.args.device.type == "cpu"
        self.activation_pool = SavedActivationPool() if compact and not offload_activations else None
        self.release_heap = compact
        self.heap_release: HeapRelease | None = None
        # LoRA layers: the scaling and sum in the second matmul, and under mixed precision no fp32 copy of their
        # input that autocast casts straight back (lean_lora).
        self.lean_lora = use_lean_lora(self.model)
        # Make the Trainer count supervised labels over the accumulation window (and ranks) and pass
        # the count as num_items_in_batch, whatever the model's forward signature says.
        declare_supervised_token_loss(self)
        # DeepSpeed-Ulysses sequence-parallel degree (1 = off), fixed by TrainingArguments.parallelism_config.
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        use_sp = parallelism is not None and parallelism.sp_backend == "deepspeed" and parallelism.sp_size > 1
        self.sequence_parallel = int(parallelism.sp_size) if use_sp else 1
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None) if self.is_deepspeed_enabled else None
        self._zero3 = plugin is not None and plugin.zero_stage == 3
        self._eval_totals = torch.zeros(2, dtype=torch.float64)  # supervised-token loss sum and count
        self._router_aux_coef = (
            float(getattr(causal_lm.config, "router_aux_loss_coef", 0.0) or 0.0)
            if getattr(causal_lm.config, "output_router_logits", False) else 0.0
        )

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """Trainer.train, with the heap-release hooks on the decoder layers for its duration only.

        Registered here and removed after (also when training raises), not in ``__init__``: hooks added per
        trainer would stay on the model, and a second trainer on the same model would release twice as often.
        """
        if self.release_heap:
            layers = getattr(unwrap_causal_lm(self.model).get_decoder(), "layers", [])
            self.heap_release = HeapRelease(layers)
        try:
            return super().train(*args, **kwargs)
        finally:
            if self.heap_release is not None:
                self.heap_release.remove()
                self.heap_release = None

    def _prepare_for_training(self, *args: Any, **kwargs: Any) -> Any:
        """Trainer's, where accelerate registers DeepSpeed-Ulysses; for an MLA model under sequence parallelism,
        registered so that it takes MLA's narrower values (:func:`ulysses_for_mla`)."""
        with ulysses_for_mla(unwrap_causal_lm(self.model).config, self.sequence_parallel):
            return super()._prepare_for_training(*args, **kwargs)

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        """Trainer's; under sequence parallelism its resume skip takes DeepSpeed's Ulysses loader
        (:func:`skipping_sequence_parallel`)."""
        if self.sequence_parallel <= 1:
            return super()._run_epoch(*args, **kwargs)
        with skipping_sequence_parallel():
            return super()._run_epoch(*args, **kwargs)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The returned (detached) value is only logged, as a mean over all ranks; under sequence parallelism
        # each rank's loss is scaled for world / sp data-parallel ranks, so the mean is 1/sp of the loss.
        # Under ZeRO-3 it is scaled for all world ranks instead: DeepSpeed 0.19's ZeRO-3 reduce-scatters the
        # gradients (`zero_optimization.reduce_scatter`, on by default, dsft leaves it) pre-divided by the whole
        # world, without the world / sp its other reduction paths use, so without that every gradient came out
        # 1/sp of the run without SP (the logged grad_norm too, and max_grad_norm clipped sp times more loosely).
        if self.sequence_parallel > 1 and not self._zero3:
            return loss * self.sequence_parallel
        return loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple[torch.Tensor | None, None, None]:
        """This batch's mean loss over its supervised tokens; also adds its token sum and count to the
        running totals :meth:`evaluation_loop` turns into the token-weighted mean (dsft computes no logits)."""
        inputs = prepare_inputs(self, inputs)
        labels = inputs.get("shift_labels", inputs.get("labels"))
        if labels is None:
            return None, None, None
        targets = labels if "shift_labels" in inputs else labels[:, 1:]
        count = targets.ne(IGNORE_INDEX).sum()
        with torch.no_grad(), self.compute_loss_context_manager():
            # num_items_in_batch=None: divided by this batch's own supervised count, no cross-rank scaling.
            loss = self.compute_loss(model, inputs, num_items_in_batch=None).detach()
        self._eval_totals += torch.stack([loss.double() * count, count.double()]).to(self._eval_totals.device)
        return loss, None, None

    def evaluation_loop(self, dataloader: Any, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> Any:
        """The Trainer's loop with ``<prefix>_loss`` replaced by the mean over every supervised token.

        The stock loop averages per-batch means weighted by rows, so the reported loss changed with the
        eval micro-batch size; this one is the same at any batch size and on any number of ranks.
        """
        self._eval_totals = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        totals = self._eval_totals
        if self.args.world_size > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        if float(totals[1]) > 0:
            output.metrics[f"{metric_key_prefix}_loss"] = float(totals[0] / totals[1])
        return output

    def _saving_activations(self, model: torch.nn.Module) -> Any:
        """Where the training forward's saved tensors go: pinned CPU memory (``offload_activations``), the
        CPU pool, or wherever autograd puts them (evaluation, no gradient)."""
        if not model.training or not torch.is_grad_enabled():
            return contextlib.nullcontext()
        if self.offload_activations:
            return torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available())
        if self.activation_pool is not None:
            return self.activation_pool.saving(model)
        return contextlib.nullcontext()

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        shifted = "shift_labels" in inputs
        labels = inputs["shift_labels"] if shifted else inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k not in _LOSS_ONLY_KEYS}
        if self._router_aux_coef:
            model_inputs["output_router_logits"] = True
        with self._saving_activations(model):
            hidden, outputs = forward_hidden_states(model, model_inputs)
        lm_head = unwrap_causal_lm(model).get_output_embeddings()
        smoothing = self.label_smoothing if model.training else 0.0
        if hasattr(lm_head.weight, "ds_id"):
            # DeepSpeed ZeRO-3 partitions the weight; it is whole only inside lm_head's own forward.
            loss = supervised_cross_entropy_via_module(
                hidden, lm_head, labels, num_items_in_batch, self.loss_chunk_size, shifted=shifted,
                label_smoothing=smoothing, compute_dtype=self.loss_compute_dtype,
            )
        else:
            loss = supervised_cross_entropy(
                hidden, lm_head.weight, labels, num_items_in_batch, self.loss_chunk_size,
                lm_head_bias=getattr(lm_head, "bias", None), shifted=shifted, label_smoothing=smoothing,
                compute_dtype=self.loss_compute_dtype,
            )
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every rank's tokens while DDP/DeepSpeed average gradients over the
            # data-parallel ranks (under sequence parallelism DeepSpeed sums a group's shards and averages
            # over world / sp).
            loss = loss * (self.accelerator.num_processes // self.get_tp_size() // self.sequence_parallel)
            if self.sequence_parallel > 1 and self._zero3:
                loss = loss * self.sequence_parallel  # ZeRO-3's reduce-scatter divides by the world (training_step)
        aux_loss = getattr(outputs, "aux_loss", None)
        if self._router_aux_coef and aux_loss is not None:
            # A per-micro-batch mean: average it over the accumulation window like the token loss.
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + self._router_aux_coef * aux_loss / steps
        return (loss, {"loss": loss.detach()}) if return_outputs else loss


def apply_liger_kernels(model: torch.nn.Module) -> bool:
    """Swap in Liger's fused RMSNorm / SwiGLU / RoPE kernels (Triton, CUDA only) when installed.

    Liger's fused linear cross-entropy is left off: dsft's chunked loss already skips the full logits and
    the prompt positions. Returns whether kernels were applied (False on CPU, without the package, or for
    an architecture Liger does not know).
    """
    if not torch.cuda.is_available():
        return False
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        return False
    try:
        _apply_liger_kernel_to_instance(
            model=unwrap_causal_lm(model), rms_norm=True, swiglu=True, rope=True,
            cross_entropy=False, fused_linear_cross_entropy=False,
        )
    except (ValueError, NotImplementedError, TypeError):
        return False
    return True


def compile_decoder_layers(model: torch.nn.Module) -> int:
    """``torch.compile`` each decoder layer of ``model`` on its own (``train.compile: layers``); returns how many.

    Regional compilation: the layers share their code, so torch compiles one layer's graph (parameters as
    inputs) and every layer of the same shape reuses it, where compiling the whole model traces all of them
    (on an H200 a 28-layer 7B did not finish compiling within 150 s). Inside a layer the element-wise ops
    (norms, RoPE, the SwiGLU product, residual and LoRA adds) fuse into few kernels: fewer launches where a
    step is launch-bound. Tracing is lazy, at the first forward, so LoRA wrapping and dsft's lean blocks
    installed after this call are compiled too. Not used by the Trainer's own ``torch_compile``.
    """
    layers = getattr(unwrap_causal_lm(model).get_decoder(), "layers", None) or []
    for layer in layers:
        layer.compile()
    return len(layers)
