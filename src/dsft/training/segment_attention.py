"""Attention within packed examples only, on a fast kernel, where flash-attn is not installed.

A packed row holds several examples. With plain sdpa, transformers builds a block-causal mask from the
restarting ``position_ids`` and sdpa then computes every query against every key of the row, across
example boundaries that the mask discards; an explicit mask also rules out sdpa's flash kernels. For a
row of 2 x 1,024 tokens that is twice the score FLOPs that matter, on the slowest kernel.

``dsft_segments`` (registered with transformers' attention interface, selected by training when packing
without flash-attn) gets the examples' boundaries from the collator (``cu_seq_lens_q``, the same keys
flash-attn's varlen path reads) and attends causally within each example only:

* on CUDA in bf16/fp16, through torch's varlen flash kernel (``torch.nn.attention.varlen``) when this torch
  has it: one call for the whole row;
* on CPU in fp32/bf16, one causal call per example of the CPU flash kernel sdpa itself picks, with no mask
  (:class:`SegmentFlashAttentionFunction`); on a CPU without AMX tiles a bf16 example shorter than 512 tokens
  attends in fp32, which is faster there (:func:`segment_compute_dtype`);
* elsewhere (older torch on CUDA, dropout), one causal sdpa call per example, with no mask.

MLA's value heads are narrower than its query/key heads (DeepSeek-V3: 128 vs 192), which sends sdpa to its
math kernel; values are zero-padded to the query/key width and the output sliced back (exact: the padded
columns of the output are zeros).

transformers builds no attention mask for one row without padding or cache (:func:`segment_mask`, the mask
function registered with this implementation): the segments come from ``cu_seq_lens_q``, or else, as
transformers' own flash-attention path finds them, from where the row's ``position_ids`` restart. Without
boundaries (evaluation with padding, generation with a KV cache, a batch of several rows) it is
transformers' own sdpa with the mask transformers built, so the same model serves every path. A
sliding-window layer gets a mask for its packed row too (the window); sdpa uses it unless no example is longer
than the window, which then excludes nothing.

Before building a mask, transformers looks for packed rows in the ``position_ids`` and asks whether it found
any (``find_packed_sequence_indices``: ``bool(tensor.all())``). That reads a value back to the host once per
forward, and on a GPU the host then waits for every kernel queued before it: the previous micro-batch's whole
backward. For ``dsft_segments`` models, :func:`_mask_arguments_without_host_read` hands transformers the
same packed-sequence ids without asking. The mask is then built as before (none for one causal row; with
the packed ids otherwise, e.g. under a sliding window). The only difference is that transformers no longer
knows when a row holds a single example, so the sdpa fallback builds its mask instead of skipping it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers import masking_utils
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from dsft.training.attention_choice import SEGMENT_ATTENTION, uses_segment_attention

try:  # torch >= 2.10 ships a varlen flash-attention kernel for CUDA
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - depends on the torch build
    varlen_attn = None
# Its keywords moved between torch releases: causal is ``is_causal=True`` in some, ``window_size=(-1, 0)`` in
# later ones, which also take ``enable_gqa``.
_VARLEN_PARAMETERS = set(inspect.signature(varlen_attn).parameters) if varlen_attn is not None else set()
if "window_size" in _VARLEN_PARAMETERS:
    _VARLEN_CAUSAL: dict[str, Any] | None = {"window_size": (-1, 0)}
elif "is_causal" in _VARLEN_PARAMETERS:
    _VARLEN_CAUSAL = {"is_causal": True}
else:  # pragma: no cover - no causal varlen in this torch
    _VARLEN_CAUSAL = None


def _varlen_usable(query: torch.Tensor, dropout: float) -> bool:
    return (_VARLEN_CAUSAL is not None and query.is_cuda and query.dtype in (torch.bfloat16, torch.float16)
            and dropout == 0.0)


def _cpu_flash_usable(query: torch.Tensor, dropout: float) -> bool:
    return query.device.type == "cpu" and query.dtype in (torch.float32, torch.bfloat16) and dropout == 0.0


# Below this many tokens a bf16 segment attends in fp32 on a CPU without AMX tiles. There the bf16 flash kernel's
# forward runs no faster than the fp32 one and its backward slower, by a margin that grows as segments
# shorten (benchmarks/bench_cpu_kernels.py, SmolLM2-135M's 9/3 heads of 64, one thread, forward + backward:
# 3.2x at 32 tokens, 1.85x at 150, 1.15x at 300, even at 500-600; from 700 tokens bf16 is faster, 1.2x at
# 1,200-2,000). On a CPU with AMX the bf16 kernel runs on the tiles, which no measurement here covers.
FP32_SEGMENT_TOKENS = 512


def segment_compute_dtype(dtype: torch.dtype, tokens: int) -> torch.dtype:
    """The dtype one segment of ``tokens`` tokens attends in on the CPU flash kernel: fp32 for a bf16 segment
    shorter than :data:`FP32_SEGMENT_TOKENS` on a CPU without AMX tiles (faster there, and the scores and
    probabilities are then exact fp32), else ``dtype``. The output and the gradients are returned in
    ``dtype`` either way.

    >>> segment_compute_dtype(torch.float32, 100)
    torch.float32
    >>> segment_compute_dtype(torch.bfloat16, 4096)
    torch.bfloat16
    """
    if dtype == torch.bfloat16 and tokens < FP32_SEGMENT_TOKENS and not _cpu_has_amx_tiles():
        return torch.float32
    return dtype


@functools.cache
def _cpu_has_amx_tiles() -> bool:  # asked once: it is read for every segment of every layer
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


class SegmentFlashAttentionFunction(torch.autograd.Function):
    """Causal attention within each segment on the CPU flash kernel sdpa itself picks, saving each tensor
    once: ``query [1, H, T, D]``, ``key``/``value [1, Hkv, T, D]`` as given (grouped-query heads are not
    repeated: the kernel takes them as they are) and one output ``[1, T, H, D]`` with its log-sum-exp. Each
    segment runs in :func:`segment_compute_dtype` (short bf16 segments in fp32), forward and backward alike.

    Calling sdpa per segment instead keeps each segment's output plus the concatenated, transposed copy
    the output projection saves, and with grouped-query attention the repeated keys and values: on
    SmolLM2-135M (9 query / 3 key-value heads of 64) 4.5 KiB more per token per layer. The output returned
    is contiguous in the layout the output projection reads, so autograd saves it there once.
    """

    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                edges: tuple[int, ...], scaling: float | None) -> torch.Tensor:
        batch, heads, tokens, _ = query.shape
        out = query.new_empty(batch, tokens, heads, value.shape[-1])
        log_sum_exp = query.new_empty(batch, heads, tokens, dtype=torch.float32)
        for start, end in zip(edges[:-1], edges[1:]):
            if end > start:
                dtype = segment_compute_dtype(query.dtype, end - start)
                part, part_lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    query[:, :, start:end].to(dtype), key[:, :, start:end].to(dtype),
                    value[:, :, start:end].to(dtype), 0.0, True, scale=scaling)
                out[:, start:end] = part.transpose(1, 2)  # back to the query's dtype
                log_sum_exp[:, :, start:end] = part_lse
        ctx.save_for_backward(query, key, value, out, log_sum_exp)
        ctx.edges, ctx.scaling = edges, scaling
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        query, key, value, out, log_sum_exp = ctx.saved_tensors
        grads = [torch.zeros_like(query), torch.zeros_like(key), torch.zeros_like(value)]
        for start, end in zip(ctx.edges[:-1], ctx.edges[1:]):
            if end > start:
                dtype = segment_compute_dtype(query.dtype, end - start)
                parts = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    grad_out[:, start:end].transpose(1, 2).to(dtype), query[:, :, start:end].to(dtype),
                    key[:, :, start:end].to(dtype), value[:, :, start:end].to(dtype),
                    out[:, start:end].transpose(1, 2).to(dtype), log_sum_exp[:, :, start:end], 0.0, True,
                    scale=ctx.scaling)
                for grad, part in zip(grads, parts):
                    grad[:, :, start:end] = part
        return grads[0], grads[1], grads[2], None, None


def segment_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query [1, H, T, Dq]``, ``key [1, Hkv, T, Dq]``,
    ``value [1, Hkv, T, Dv]`` -> ``(output [1, T, H, Dv], None)``, causal within each example of
    ``kwargs["cu_seq_lens_q"]`` (offsets of the examples in the flattened row, length examples + 1)."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None and attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]:
        # segment_mask built no mask for this row: if it is packed, its position ids say where examples start.
        bounds = segment_offsets(kwargs.get("position_ids"), query.shape[2])
    if (bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]
            or (attention_mask is not None and not _window_spans_every_segment(kwargs.get("sliding_window"),
                                                                               bounds))):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    device = query.device.type
    if torch.is_autocast_enabled(device):
        # As autocast casts sdpa's inputs: under mixed precision with fp32 weights (full fine-tuning) RoPE
        # leaves the query and key in fp32 beside a bf16 value, which the flash kernels do not take.
        dtype = torch.get_autocast_dtype(device)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    value_width, query_width = value.shape[-1], query.shape[-1]
    if value_width < query_width:
        value = F.pad(value, (0, query_width - value_width))
    groups = query.shape[1] // key.shape[1]
    if _varlen_usable(query, dropout):
        gqa: dict[str, Any] = {}
        if groups > 1 and "enable_gqa" in _VARLEN_PARAMETERS:
            gqa["enable_gqa"] = True
        elif groups > 1:
            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        offsets = bounds.to(device=query.device, dtype=torch.int32)
        longest = int(kwargs.get("max_length_q") or int((offsets[1:] - offsets[:-1]).max()))
        out = varlen_attn(query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
                          offsets, offsets, longest, longest, scale=scaling, **_VARLEN_CAUSAL, **gqa)
        out = out.unsqueeze(0)  # [1, T, H, D]
    elif _cpu_flash_usable(query, dropout):
        edges = tuple(int(b) for b in bounds.tolist())
        out = SegmentFlashAttentionFunction.apply(query, key, value, edges, scaling)  # [1, T, H, D]
    else:
        if groups > 1:
            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        edges = [int(b) for b in bounds.tolist()]
        parts = [
            F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                           dropout_p=dropout, is_causal=True, scale=scaling)
            for start, end in zip(edges[:-1], edges[1:]) if end > start
        ]
        out = torch.cat(parts, dim=2).transpose(1, 2)
    if value_width < query_width:
        out = out[..., :value_width]
    return out.contiguous(), None


def _window_spans_every_segment(sliding_window: int | None, bounds: torch.Tensor) -> bool:
    """Whether a sliding-window layer's mask (the only mask transformers builds for one packed causal row,
    :func:`segment_mask`) excludes nothing within any segment: a query sees the ``sliding_window`` keys up to
    itself, so a segment no longer than the window attends as under plain causal attention. False for any
    other mask, which the caller then hands to sdpa as it is."""
    if sliding_window is None:
        return False
    return int((bounds[1:] - bounds[:-1]).max()) <= sliding_window


def segment_offsets(position_ids: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Offsets of the sequences packed in one row of ``length`` tokens, read from where its position ids do
    not go up by one (as transformers reads a packed row); None when the row holds one sequence or the ids
    are not given.

    >>> segment_offsets(torch.tensor([[0, 1, 2, 0, 1, 0]]), 6).tolist()
    [0, 3, 5, 6]
    >>> segment_offsets(torch.tensor([[0, 1, 2]]), 3) is None
    True
    """
    if position_ids is None or position_ids.shape[-1] != length:
        return None
    positions = position_ids.reshape(-1, length)[0]
    starts = torch.nonzero(positions[1:] != positions[:-1] + 1).flatten() + 1
    if starts.numel() == 0:
        return None
    edges = [torch.zeros(1, dtype=starts.dtype, device=starts.device), starts,
             torch.full((1,), length, dtype=starts.dtype, device=starts.device)]
    return torch.cat(edges).to(torch.int32)


def segment_mask(batch_size: int, q_length: int, kv_length: int, q_offset: Any = 0, kv_offset: int = 0,
                 attention_mask: torch.Tensor | None = None, local_size: int | None = None, use_vmap: bool = False,
                 **kwargs: Any) -> torch.Tensor | None:
    """The mask transformers builds for ``dsft_segments`` (its mask-interface signature): none for one
    causal row without padding or cache, which :func:`segment_attention_forward` splits into its examples
    itself; sdpa's mask, for the fallback, in every other case (padding, a KV cache, several rows, sliding
    windows, extra mask functions, bidirectional attention)."""
    one_causal_row = (batch_size == 1 and q_length == kv_length and attention_mask is None and local_size is None
                      and not use_vmap and "allow_is_bidirectional_skip" not in kwargs
                      and isinstance(q_offset, int) and q_offset == 0 and kv_offset == 0)
    if one_causal_row:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, local_size=local_size, use_vmap=use_vmap,
                     **kwargs)


def packed_sequence_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Which example of its row each position belongs to (0, 0, 1, 1, 1, 2, ...): a new example wherever the
    position does not follow the previous one by 1. This is transformers' ``find_packed_sequence_indices``
    without its check for "no packing", which reads a value back to the host."""
    previous = position_ids[:, :1] - 1
    return (torch.diff(position_ids, prepend=previous, dim=-1) != 1).cumsum(-1)


_transformers_mask_arguments = masking_utils._preprocess_mask_arguments


def _mask_arguments_without_host_read(config: Any, inputs_embeds: torch.Tensor, attention_mask: Any, cache: Any,
                                      position_ids: torch.Tensor | None, layer_idx: int | None,
                                      *args: Any) -> tuple:
    """transformers' ``_preprocess_mask_arguments``; for ``dsft_segments`` with ``position_ids`` and no mask
    or cache (training on packed rows), the packed-sequence ids come from :func:`packed_sequence_ids`,
    computed on the device and never read back."""
    if (getattr(config, "_attn_implementation", None) != SEGMENT_ATTENTION or position_ids is None
            or attention_mask is not None or cache is not None):
        return _transformers_mask_arguments(config, inputs_embeds, attention_mask, cache, position_ids, layer_idx,
                                            *args)
    early_exit, mask, _, q_length, kv_length, q_offset, kv_offset = _transformers_mask_arguments(
        config, inputs_embeds, attention_mask, cache, None, layer_idx, *args)
    packed = None if early_exit else packed_sequence_ids(position_ids.expand(inputs_embeds.shape[0], -1))
    return early_exit, mask, packed, q_length, kv_length, q_offset, kv_offset


AttentionInterface.register(SEGMENT_ATTENTION, segment_attention_forward)
AttentionMaskInterface.register(SEGMENT_ATTENTION, segment_mask)
# transformers looks the function up in its module at every call (create_causal_mask and its sliding-window
# and chunked variants); other models' modules that imported it by name keep the original.
masking_utils._preprocess_mask_arguments = _mask_arguments_without_host_read


def select_segment_attention(model: Any, packing: bool, requested: str = "auto") -> bool:
    """Switch ``model`` from sdpa to ``dsft_segments`` for packed training where
    :func:`uses_segment_attention` says so; True when switched."""
    if not uses_segment_attention(packing, requested, getattr(model.config, "_attn_implementation", None)):
        return False
    model.config._attn_implementation = SEGMENT_ATTENTION
    return True
