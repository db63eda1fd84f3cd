"""Activation memory measured on the real decoder layers, on the ``meta`` device.

Instead of a textbook constant (Korthikanti's 34 s*b*h per GPT block), the planner runs one forward of
each distinct decoder layer of the actual model on meta tensors and records every tensor autograd
saves for backward (``torch.autograd.graph.saved_tensors_hooks``), counting each storage once and
excluding parameters. That captures MLA's low-rank projections and their norms, SwiGLU's three
intermediate tensors, fp32 upcasts in RMSNorm and the router, and the top-k routed-expert rows exactly
as transformers computes them; meta tensors cost no memory, so this runs at the real sequence length.

Attention is traced with a stand-in that saves what FlashAttention (and PyTorch's flash SDPA kernels)
keep: q, k, v, the output and one fp32 log-sum-exp per head and token, never the s x s score matrix. Under
sequence parallelism (DeepSpeed-Ulysses) the kernel runs on every token of heads / K heads and saves that
output, and an all-to-all hands the rank's tokens of every head back as a new tensor, which ``o_proj`` saves:
the stand-in returns a copy of its output, so every model's attention output is counted twice (the same bytes
either side of the exchange). Multi-head latent attention is also wrapped as training wraps Ulysses
(:func:`dsft.training.sequence_parallel_mla.pad_values_around`): values zero-padded to the query/key width, so
the kernel saves 1.5x wide values and outputs (V3), and the sliced output is copied for ``o_proj``.
Routed experts use transformers' ``grouped_mm`` path (tokens * top_k rows, a perfectly balanced router)
with the grouped matmul itself replaced by a stand-in that saves what its autograd saves (the input
rows), because the meta kernel accepts only bf16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ATTENTION_STAND_IN = "dsft_planner_flash"
ULYSSES_STAND_IN = "dsft_planner_flash_ulysses"  # the stand-in as every model trains under Ulysses
PADDED_VALUES_STAND_IN = "dsft_planner_flash_padded_values"  # the stand-in as MLA trains under Ulysses


@dataclass(frozen=True)
class LayerActivations:
    """Bytes autograd keeps for one decoder layer's backward, for a given (batch, tokens) input."""

    saved_bytes: int  # everything saved for backward (no checkpointing)
    input_bytes: int  # the layer input alone (what checkpointing keeps)
    largest_tensor_bytes: int  # the biggest single saved tensor (sizes the backward working set)


def _register_attention_stand_ins() -> None:
    import torch
    from transformers import AttentionInterface

    # dsft's own module, imported here with torch (which it imports): this module stays light to import.
    from dsft.training.sequence_parallel_mla import pad_values_around

    class _FlashLikeAttention(torch.autograd.Function):
        """Saves exactly what a flash kernel saves; only ever run on meta tensors."""

        @staticmethod
        def forward(ctx: Any, query: Any, key: Any, value: Any) -> Any:  # [b, heads, s, d]
            batch, heads, seq, _ = query.shape
            out = query.new_empty(batch, seq, heads, value.shape[-1])
            lse = query.new_empty(batch, heads, seq, dtype=torch.float32)
            ctx.save_for_backward(query, key, value, out, lse)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # never called: the planner runs forward only
            query, key, value, _, _ = ctx.saved_tensors
            return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)

    def flash_like(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
        return _FlashLikeAttention.apply(query, key, value), None

    def exchanged(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
        # Ulysses's all-to-all returns a new tensor, not the one the kernel saved; it saves nothing itself.
        out, weights = flash_like(module, query, key, value, attention_mask, **kwargs)
        return out.clone(), weights

    AttentionInterface.register(ATTENTION_STAND_IN, flash_like)
    AttentionInterface.register(ULYSSES_STAND_IN, exchanged)
    AttentionInterface.register(PADDED_VALUES_STAND_IN, pad_values_around(exchanged))


class _GroupedMatmulStandIn:
    """Replaces transformers' ``_grouped_mm`` during a trace: output shape only, saves the input rows."""

    def __enter__(self) -> None:
        import torch
        from transformers.integrations import moe

        class _GroupedMatmul(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, rows: Any, weight: Any) -> Any:  # rows [S, in], weight [E, in, out]
                ctx.save_for_backward(rows, weight)
                return rows.new_empty(rows.shape[0], weight.shape[-1])

            @staticmethod
            def backward(ctx: Any, grad: Any) -> Any:  # never called: the planner runs forward only
                rows, weight = ctx.saved_tensors
                return torch.empty_like(rows), torch.empty_like(weight)

        self._module, self._original = moe, moe._grouped_mm
        moe._grouped_mm = lambda rows, weight, offs: _GroupedMatmul.apply(rows.to(weight.dtype), weight)

    def __exit__(self, *exc: object) -> None:
        self._module._grouped_mm = self._original


def _distinct_layers(model: Any) -> list[tuple[Any, int]]:
    """One representative of each decoder-layer kind (dense / MoE / sliding ...) and how many there are."""
    kinds: dict[tuple[str, ...], list[Any]] = {}
    for layer in model.model.layers:
        signature = tuple(type(m).__name__ for m in layer.modules())
        kinds.setdefault(signature, []).append(layer)
    return [(layers[0], len(layers)) for layers in kinds.values()]


def trace_layer(model: Any, layer: Any, batch: int, tokens: int, dtype: Any) -> LayerActivations:
    """Run ``layer`` forward on meta tensors of shape [batch, tokens, hidden] and total the saved tensors."""
    import torch

    hidden = model.config.hidden_size
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    param_storages |= {b.untyped_storage()._cdata for b in model.buffers()}
    saved: dict[int, int] = {}
    # Saved tensors are kept alive until counted, so no storage address is reused by a later one.
    alive: list[Any] = []

    def pack(tensor: Any) -> Any:
        alive.append(tensor)
        storage = tensor.untyped_storage()
        if storage._cdata not in param_storages:
            saved[storage._cdata] = max(saved.get(storage._cdata, 0), storage.nbytes())
        return tensor

    x = torch.empty(batch, tokens, hidden, device="meta", dtype=dtype, requires_grad=True)
    positions = torch.arange(tokens, device="meta").expand(batch, tokens)
    position_embeddings = model.model.rotary_emb(x, positions) if hasattr(model.model, "rotary_emb") else None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = layer(x, attention_mask=None, position_ids=positions, position_embeddings=position_embeddings)
    del output
    alive.clear()  # the saved tensors, counted: released (a `del` would leave pack's name unbound)
    return LayerActivations(
        saved_bytes=sum(saved.values()),
        input_bytes=x.numel() * x.element_size(),
        largest_tensor_bytes=max(saved.values(), default=0),
    )


def trace_model_layers(model: Any, batch: int, tokens: int, dtype: Any,
                       ulysses: bool = False) -> list[tuple[LayerActivations, int]]:
    """Trace every distinct decoder layer of a meta ``model``; returns (activations, layer count) pairs.
    ``ulysses``: attention as DeepSpeed-Ulysses runs it (sequence parallelism; ``tokens`` per rank): its output
    exchanged into a new tensor, and multi-head latent attention's values padded to the query/key width."""
    import torch

    # dsft's own module, imported here with torch (which it imports): this module stays light to import.
    from dsft.training.sequence_parallel_mla import is_mla

    _register_attention_stand_ins()
    config = model.config
    previous = (config._attn_implementation, getattr(config, "_experts_implementation", None))
    config._attn_implementation = (ATTENTION_STAND_IN if not ulysses
                                   else PADDED_VALUES_STAND_IN if is_mla(config) else ULYSSES_STAND_IN)
    if previous[1] is not None:
        config._experts_implementation = "grouped_mm"
    model.train()
    # The parameters' requires_grad decides what autograd saves; LoRA adapters read the same inputs
    # as the frozen weights they wrap, so a fully trainable trace is the right count for every method.
    try:
        with torch.enable_grad(), _GroupedMatmulStandIn():
            return [(trace_layer(model, layer, batch, tokens, dtype), count)
                    for layer, count in _distinct_layers(model)]
    finally:
        config._attn_implementation = previous[0]
        if previous[1] is not None:
            config._experts_implementation = previous[1]

