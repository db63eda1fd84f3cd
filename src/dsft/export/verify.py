"""Check an export against the trained model: same prompts in, logits compared position by position.

Every export is verified unless the user opts out: peers ship merged checkpoints and GGUF files that
nobody compared with the model that was trained. The prompts are rendered with the run's own chat
template (so the special tokens training saw are exercised) plus raw text with Chinese and digits
(so the tokenizer's pre-tokenizer paths are exercised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dsft.data.conversation import Conversation, Message
from dsft.errors import DsftError
from dsft.export.bounds import LogitBound, LogitComparison, as_bound
from dsft.templates import get_template

RAW_TEXTS = (
    "The quick brown fox jumps over the lazy dog 1234567.",
    "深度求索的模型支持中文和English混合输入，共有 42 个例子。",
)


def verification_conversations() -> list[Any]:
    """Fixed conversations (system + user, a multi-turn chat with reasoning in history)."""
    return [
        Conversation([Message("user", "What is 2+2? Answer briefly.")]),
        Conversation([
            Message("system", "You are a helpful assistant."),
            Message("user", "Hi"),
            Message("assistant", "Hello! How can I help?", reasoning="The user greets me."),
            Message("user", "写一首关于秋天的短诗。"),
        ]),
    ]


def verification_prompts(tokenizer: Any, template_name: str) -> list[list[int]]:
    """Token ids of the fixed prompts: inference prompts of the run's template, then raw texts.

    Rendered prompts already contain BOS, so they are tokenized without special tokens (no double BOS);
    raw texts get the tokenizer's own specials, as a plain completion request would.
    """
    template = get_template(template_name, tokenizer)
    prompts = [tokenizer.encode(template.render_prompt(conv), add_special_tokens=False)
               for conv in verification_conversations()]
    prompts += [tokenizer.encode(text, add_special_tokens=True) for text in RAW_TEXTS]
    return [ids for ids in prompts if ids]


class VerificationError(DsftError):
    """The export was written but does not reproduce the trained model; its files are kept to inspect."""


def compare_logits(reference: Sequence[Any], candidate: Sequence[Any]) -> LogitComparison:
    """Compare per-prompt logits arrays (``[positions, vocab]``, numpy or torch) of two models.

    The candidate may carry fewer vocabulary columns than the reference only if the extra reference
    columns are padding rows (GGUF exports keep the model's full vocab, so the widths normally match).
    """
    import numpy as np

    worst, scale, agree, total, kl_sum = 0.0, 0.0, 0, 0, 0.0
    position_diffs: list[float] = []
    for ref, cand in zip(reference, candidate, strict=True):
        ref_arr = np.asarray(ref, dtype=np.float32)
        cand_arr = np.asarray(cand, dtype=np.float32)
        if ref_arr.shape != cand_arr.shape:
            raise DsftError(f"logits shapes differ: reference {ref_arr.shape}, export {cand_arr.shape}")
        # np.max, not max(): NaN logits must make the difference NaN (which every bound refuses); Python's
        # max(0.0, nan) is 0.0, which reported an export of NaN logits as a perfect match.
        diffs = np.abs(ref_arr - cand_arr).max(-1)  # per position; NaN stays NaN
        position_diffs += diffs.tolist()
        worst = float(np.max([worst, diffs.max()]))
        scale = max(scale, float(np.abs(ref_arr).max()))
        agree += int((ref_arr.argmax(-1) == cand_arr.argmax(-1)).sum())
        kl_sum += float(_kl_rows(ref_arr, cand_arr).sum())
        total += ref_arr.shape[0]
    return LogitComparison(worst, agree / max(total, 1), total, len(reference), scale, kl_sum / max(total, 1),
                           tuple(position_diffs))


def _log_softmax(logits: Any) -> Any:
    import numpy as np

    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _kl_rows(reference: Any, candidate: Any) -> Any:
    """KL(softmax(reference) || softmax(candidate)) per row, in nats."""
    import numpy as np

    log_p, log_q = _log_softmax(reference), _log_softmax(candidate)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1)


def hf_logits(model: Any, prompts: Sequence[Sequence[int]]) -> list[Any]:
    """Float32 logits ``[positions, vocab]`` of a transformers (or peft) model, one prompt at a time.

    One prompt per forward: no padding, so no attention-mask path differs from single-request serving.
    """
    import torch

    out = []
    with torch.no_grad():
        for ids in prompts:
            logits = model(input_ids=torch.tensor([list(ids)])).logits[0]
            out.append(logits.float().numpy())
    return out


def check_tolerance(comparison: LogitComparison, tolerance: float | LogitBound, what: str,
                    echo: Callable[[str], None] | None = None) -> LogitComparison:
    """Report the comparison and raise :class:`VerificationError` if ``tolerance`` does not accept it: a bare
    number bounds the max |logit difference|; else any :class:`~dsft.export.bounds.LogitBound`."""
    bound = as_bound(tolerance)
    if echo is not None:
        echo(f"verify {what}: {comparison.summary()} (needs {bound.describe(comparison)})")
    if not bound.accepts(comparison):
        raise VerificationError(
            f"verification failed for {what}: {comparison.summary()}; {bound.refusal(comparison)}: the export "
            "does not reproduce the trained model (rerun with --tolerance to set another bound, e.g. "
            "--tolerance 'diff=10%,outliers=10%' or 'top1=80%,kl=0.1', see docs/export.md; or --no-verify to skip)"
        )
    return comparison
