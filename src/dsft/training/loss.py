"""Cross-entropy on supervised tokens only, chunked so the full [tokens x vocab] logits never exist.

The usual causal-LM loss projects every position of every row onto the vocabulary: for 8 rows of 4,096
tokens and a 129k vocabulary that is 16.9 GB of fp32 logits, plus as much for their gradient, and most
of it is spent on prompt and padding positions whose labels are -100 anyway. Here:

1. labels are shifted (position t predicts label t+1) and only positions with a label are kept;
2. lm_head + softmax run over ``chunk_size`` of those positions at a time: the matmuls in
   ``train.loss_dtype`` (the weights' dtype by default; bf16 as an option, faster on CPUs with bf16
   matrix instructions), softmax,
   log-sum-exp and the loss in fp32, one fused softmax pass per chunk;
3. each chunk's gradient (softmax - one_hot) is pushed through lm_head right away, so backward needs
   no recomputation and no chunk's logits outlive its loop iteration (peak: one chunk of logits);
4. the summed loss is divided by ``num_items_in_batch``: the number of supervised tokens in the whole
   global batch (every accumulation step, every rank), so 8 micro-batches of 1 give the same update
   as one batch of 8, whatever the number of supervised tokens in each.

Label smoothing ``eps`` mixes the one-hot target with the uniform distribution, as
``F.cross_entropy(label_smoothing=eps)``: per position the loss is
``(1 - eps) * -log p[target] + eps * mean_v(-log p[v]) = lse - (1 - eps) * logit[target] - eps * mean(logits)``
and its gradient with respect to the logits is ``softmax - (1 - eps) * one_hot - eps / vocab``.
"""

from __future__ import annotations

from typing import Any

import torch

from dsft.templates.base import IGNORE_INDEX

# CPU: rows per chunk such that one fp32 logits chunk is about this size. Measured on a 2-core Xeon with
# the 129k vocabulary (docs/performance.md): 64-row chunks (32 MiB) ran the loss 1.4x faster than 256.
CPU_CHUNK_BYTES = 32 * 2**20
GPU_CHUNK_ROWS = 256
# ``train.loss_dtype``: the dtype of the lm_head matmuls; softmax, log-sum-exp and the loss stay fp32.
LOSS_DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16}


def auto_chunk_size(vocab_size: int, device_type: str) -> int:
    """``train.loss_chunk_size: auto``: 256 rows on accelerators; on CPU a chunk of about 32 MiB of logits."""
    if device_type != "cpu":
        return GPU_CHUNK_ROWS
    return max(8, min(1024, CPU_CHUNK_BYTES // (4 * vocab_size)))


def resolve_loss_dtype(setting: str, weight: torch.Tensor) -> torch.dtype:
    """The dtype of the lm_head matmuls for ``train.loss_dtype`` (softmax and loss are fp32 in every case).

    ``auto``: the lm_head weight's own dtype, on every device (bf16 under bf16 training, fp32 for fp32
    weights). bf16 for fp32 weights on a CPU is an option, not the default: it speeds the loss up 1.5-2x
    on CPUs with bf16 instructions, but a real model's LoRA fine-tune learned less with it on average
    over seeds (docs/performance.md), and on real shapes the head is a small share of the step.
    """
    if setting not in LOSS_DTYPES:
        raise ValueError(f"loss_dtype must be one of {', '.join(LOSS_DTYPES)}, got {setting!r}")
    if setting != "auto":
        return LOSS_DTYPES[setting]
    return weight.dtype


def _project(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor,
             low: torch.Tensor | None = None) -> torch.Tensor:
    """``out[:] = h @ weight.T + bias`` with fp32 ``out``: the only place the loss calls the lm_head matmul.

    The matmul runs in ``weight``'s dtype; a low-precision product lands in ``low`` (a reused buffer of
    that dtype) and is widened into ``out``.
    """
    if weight.dtype == torch.float32:
        torch.mm(h.float(), weight.t(), out=out)
    elif low is not None:
        out.copy_(torch.mm(h.to(weight.dtype), weight.t(), out=low))
    else:
        out.copy_(torch.mm(h.to(weight.dtype), weight.t()))
    if bias is not None:
        out += bias
    return out


# Below this probability of the target, -log p[target] from the fp32 softmax loses precision (fp32's
# smallest normal is 1.2e-38): such rows get their log-sum-exp recomputed exactly.
_SMALLEST_SAFE_PROBABILITY = 1e-30
# Backward scales each saved fp32 gradient and casts it to its parameter's dtype this many bytes of fp32 at a time:
# a whole-tensor product would be an fp32 [vocab, hidden] temporary beside the result (3.45 GiB on V3).
SCALE_CAST_BLOCK_BYTES = 64 * 2**20


def _scaled_cast(gradient: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(gradient * scale).to(dtype)``, one rounding per element, without a full-size product when ``dtype``
    differs from the gradient's (the product is formed block by block into the result)."""
    if dtype == gradient.dtype or gradient.dim() == 0:
        return (gradient * scale).to(dtype)
    result = torch.empty(gradient.shape, dtype=dtype, device=gradient.device)
    rows = max(1, SCALE_CAST_BLOCK_BYTES // max(1, gradient[0].numel() * gradient.element_size()))
    for start in range(0, gradient.shape[0], rows):
        result[start : start + rows] = gradient[start : start + rows] * scale
    return result


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Sum over rows of ``-log softmax(hidden @ weight.T + bias)[target]``, gradients computed in forward.

    Per chunk: one lm_head matmul in ``compute_dtype`` (fp32 logits), one fused row-wise softmax pass in
    fp32 written over the logits (max, exp, sum and normalisation with the row in cache), the loss read off
    the target's probability, and the gradient matmul(s) in ``compute_dtype``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk_size: int,
        grad_enabled: bool,
        smoothing: float = 0.0,
        compute_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        # ``needs_input_grad`` says which inputs require grad, not whether a graph is being recorded: under
        # ``torch.no_grad()`` (evaluation) it stays True for a trainable lm_head, and forward would compute a
        # [vocab, hidden] fp32 weight gradient nobody reads. Grad mode is off inside forward itself, so the
        # caller's mode comes in as ``grad_enabled``.
        want_hidden, want_weight, want_bias = (grad_enabled and wanted for wanted in ctx.needs_input_grad[:3])
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        # Accumulate the lm_head gradient in fp32 across chunks; skipped entirely when lm_head is frozen (LoRA).
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if want_bias and bias is not None else None
        compute_dtype = compute_dtype or weight.dtype
        # The weight in the matmul dtype, converted once per call (not per chunk).
        w = weight if weight.dtype == compute_dtype else weight.to(compute_dtype)
        rows = min(chunk_size, hidden.shape[0])
        # One [chunk, vocab] fp32 buffer, allocated once and reused by every chunk, does all the work in
        # place; a low-precision matmul gets a second one of its dtype. Reuse matters on CPU: a fresh buffer
        # of this size is a fresh mmap whose every page faults on first touch, every chunk.
        buffer = torch.empty((rows, weight.shape[0]), dtype=torch.float32, device=hidden.device)
        low = (torch.empty((rows, weight.shape[0]), dtype=compute_dtype, device=hidden.device)
               if compute_dtype != torch.float32 else None)
        vocab = weight.shape[0]
        # With smoothing the hidden gradient gains -eps/vocab * sum_v W[v]: the mean row of W, computed once.
        mean_row = weight.float().mean(0) if smoothing and want_hidden else None
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size]
            t = targets[start : start + chunk_size]
            logits = _project(h, w, bias, buffer[: h.shape[0]], None if low is None else low[: h.shape[0]])
            target_logits = logits.gather(1, t[:, None]).squeeze(1)
            smoothed = target_logits
            if smoothing:  # read before the buffer is overwritten in place below
                smoothed = (1.0 - smoothing) * target_logits + smoothing * logits.mean(dim=-1)
            # One fused pass per row: the probabilities overwrite the logits.
            probs = torch._softmax(logits, -1, False, out=logits)
            target_probs = probs.gather(1, t[:, None]).squeeze(1)
            # log-sum-exp = logit[target] - log p[target]: the softmax's fp32 sum, recovered without a pass.
            lse = target_logits - target_probs.log()
            tiny = target_probs < _SMALLEST_SAFE_PROBABILITY
            if bool(tiny.any()):
                again = torch.empty((int(tiny.sum()), vocab), dtype=torch.float32, device=hidden.device)
                lse[tiny] = torch.logsumexp(_project(h[tiny], w, bias, again), dim=-1)
            total += (lse - smoothed).sum()
            if grad_hidden is None and grad_weight is None and grad_bias is None:
                continue
            # d(loss)/d(logits) = softmax - (1 - eps) * one_hot - eps / vocab.
            if grad_weight is None and grad_bias is None:
                # d/dh = softmax @ W - (1 - eps) W[target] - eps * mean_v W[v], without forming the
                # [N, vocab] gradient (the usual LoRA case: a frozen lm_head needs no weight gradient).
                p = probs if low is None else low[: h.shape[0]].copy_(probs)
                projected = (p @ w).float()
                projected -= (1.0 - smoothing) * weight[t].float()
                if mean_row is not None:
                    projected -= smoothing * mean_row
                grad_hidden[start : start + chunk_size] = projected.to(hidden.dtype)  # type: ignore[index]
                continue
            grad_logits = probs
            grad_logits[torch.arange(t.shape[0], device=t.device), t] -= 1.0 - smoothing
            if smoothing:
                grad_logits -= smoothing / vocab
            if grad_hidden is not None:
                g = grad_logits if low is None else low[: h.shape[0]].copy_(grad_logits)
                grad_hidden[start : start + chunk_size] = (g @ w).to(hidden.dtype)
            if grad_weight is not None:
                # In fp32, accumulated in place: a bf16 product would need a [vocab, hidden] temporary per
                # chunk (no bf16-in, fp32-out GEMM on CPU), which measured slower than this fp32 matmul.
                torch.addmm(grad_weight, grad_logits.t(), h.float(), out=grad_weight)
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
        ctx.save_for_backward(
            *(g if g is not None else torch.empty(0) for g in (grad_hidden, grad_weight, grad_bias))
        )
        ctx.has = (grad_hidden is not None, grad_weight is not None, grad_bias is not None)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        grads: list[torch.Tensor | None] = []
        for tensor, present, dtype in zip(saved, ctx.has, ctx.dtypes):
            grads.append(_scaled_cast(tensor, grad_out, dtype) if present else None)
        return grads[0], grads[1], grads[2], None, None, None, None, None


def select_supervised(
    hidden_states: torch.Tensor, labels: torch.Tensor, shifted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift labels by one and keep the positions that have one: ``(hidden [N, H], targets [N])``.

    Position t of a row predicts token t+1, so ``hidden[:, :-1]`` pairs with ``labels[:, 1:]``. With
    ``shifted=True`` the labels are already the targets of their own positions (``shift_labels``, as
    sequence parallelism hands out a row's shard) and pair with ``hidden`` as they are.
    """
    if shifted:
        keep = labels.ne(IGNORE_INDEX)
        return hidden_states[keep], labels[keep]
    shifted_labels = labels[:, 1:]
    keep = shifted_labels.ne(IGNORE_INDEX)
    return hidden_states[:, :-1][keep], shifted_labels[keep]


def _connected_zero(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The loss of a micro-batch without a supervised token: 0, reaching the hidden states and the lm_head's weight
    and bias, so their (zero) gradients exist on this rank as on the others."""
    zero = hidden_states.sum() * 0.0 + weight.sum() * 0.0
    return zero if bias is None else zero + bias.sum() * 0.0


def supervised_cross_entropy(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    chunk_size: int = 1024,
    lm_head_bias: torch.Tensor | None = None,
    shifted: bool = False,
    label_smoothing: float = 0.0,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Summed next-token cross-entropy over supervised positions, divided by ``num_items_in_batch``.

    ``hidden_states`` [B, T, H] is the body's last hidden state, ``labels`` [B, T] the unshifted labels
    (-100 where unsupervised), or the already shifted ones with ``shifted=True``. ``num_items_in_batch`` is the number of supervised (shifted) labels in the
    whole global batch; ``None`` means this batch alone (a plain mean). The lm_head matmuls run in
    ``compute_dtype`` (default: the weight's dtype; see :func:`resolve_loss_dtype`), softmax and the loss in
    fp32, ``chunk_size`` positions at a time. ``label_smoothing`` as in ``F.cross_entropy`` (see the module
    docstring).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    hidden, targets = select_supervised(hidden_states, labels, shifted)
    if targets.numel() == 0:
        # Keep the graph connected (zero gradients, the lm_head's included) so every rank runs the same backward
        # and reduces the same gradients (DDP, ZeRO-1/2 buckets).
        return _connected_zero(hidden_states, lm_head_weight, lm_head_bias)
    total = _ChunkedLinearCrossEntropy.apply(hidden, lm_head_weight, lm_head_bias, targets, chunk_size,
                                             torch.is_grad_enabled(), float(label_smoothing), compute_dtype)
    denominator = targets.numel() if num_items_in_batch is None else num_items_in_batch
    if isinstance(denominator, torch.Tensor):
        denominator = denominator.to(total.device, torch.float32)
    return total / denominator


def supervised_cross_entropy_via_module(
    hidden_states: torch.Tensor,
    lm_head: torch.nn.Module,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    chunk_size: int = 1024,
    shifted: bool = False,
    label_smoothing: float = 0.0,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The same loss, computed inside one call of the ``lm_head`` module.

    For DeepSpeed ZeRO-3, whose partitioned lm_head weight exists in full only inside the module's own
    forward: DeepSpeed gathers it around the call, and again before backward. The chunked loss runs as that
    call's forward, so the weight's gradient comes out of one backward node, once per micro-batch.

    Calling the module once per chunk under reentrant checkpointing (before 2026-11-27) ran one inner
    backward per chunk, each accumulating into the weight's gradient; ZeRO-3 reduces a gradient when it is
    accumulated and refused the second one (DeepSpeed's ``assert len(set(p.ds_id ...))``): every full
    fine-tune under ZeRO-3, whose lm_head trains, failed at its first step.

    The module is called even when this micro-batch has no supervised token (a sequence-parallel shard that
    holds only prompt or padding): ZeRO-3's gather is a collective, and a rank that skipped it (before
    2026-11-28) left the others' all-gather paired with its next collective (gloo: ``Received data size
    doesn't match expected size``, and the job aborted).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    hidden, targets = select_supervised(hidden_states, labels, shifted)
    grad_enabled = torch.is_grad_enabled()

    def chunked_loss(rows: torch.Tensor) -> torch.Tensor:  # lm_head's forward for this one call
        if targets.numel() == 0:
            # A zero loss that still reaches the (gathered) weight: this rank gathers it in forward and
            # backward and reduces its zero gradient, as the ranks that have supervised tokens do.
            return _connected_zero(hidden_states, lm_head.weight, getattr(lm_head, "bias", None))
        return _ChunkedLinearCrossEntropy.apply(rows, lm_head.weight, getattr(lm_head, "bias", None), targets,
                                                chunk_size, grad_enabled, float(label_smoothing), compute_dtype)

    own_forward = lm_head.__dict__.get("forward")  # an instance-level forward someone else set, kept
    lm_head.forward = chunked_loss  # the module's hooks (DeepSpeed's gather and release) run around it
    try:
        total = lm_head(hidden)
    finally:
        if own_forward is None:
            del lm_head.forward
        else:
            lm_head.forward = own_forward
    denominator = targets.numel() if num_items_in_batch is None else num_items_in_batch
    if isinstance(denominator, torch.Tensor):
        denominator = denominator.to(total.device, torch.float32)
    return total / denominator


def reference_cross_entropy(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    lm_head_bias: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The same loss the plain way (full logits + ``F.cross_entropy``): the independent check for tests."""
    logits = torch.nn.functional.linear(hidden_states, lm_head_weight, lm_head_bias).float()
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].reshape(-1)
    total = torch.nn.functional.cross_entropy(
        shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing
    )
    count = shifted_labels.ne(IGNORE_INDEX).sum() if num_items_in_batch is None else num_items_in_batch
    return total / count
