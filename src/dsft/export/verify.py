"""Check an export against the trained model: same prompts in, logits compared position by position.

Every export is verified unless the user opts out: peers ship merged checkpoints and GGUF files that
nobody compared with the model that was trained. The prompts are rendered with the run's own chat
template (so the special tokens training saw are exercised) plus raw text with Chinese and digits
(so the tokenizer's pre-tokenizer paths are exercised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dsft.errors import DsftError

RAW_TEXTS = (
    "The quick brown fox jumps over the lazy dog 1234567.",
    "深度求索的模型支持中文和English混合输入，共有 42 个例子。",
)


def verification_conversations() -> list[Any]:
    """Fixed conversations (system + user, a multi-turn chat with reasoning in history)."""
    from dsft.data.conversation import Conversation, Message

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
    from dsft.templates import get_template

    template = get_template(template_name, tokenizer)
    prompts = [tokenizer.encode(template.render_prompt(conv), add_special_tokens=False)
               for conv in verification_conversations()]
    prompts += [tokenizer.encode(text, add_special_tokens=True) for text in RAW_TEXTS]
    return [ids for ids in prompts if ids]


@dataclass(frozen=True)
class LogitComparison:
    """How far an export's next-token logits are from the reference, over every prompt position."""

    max_abs_diff: float
    top1_agreement: float  # fraction of positions whose argmax token is the same
    positions: int
    prompts: int
    max_abs_logit: float = 0.0  # scale of the reference logits, to read max_abs_diff against

    @property
    def relative_diff(self) -> float:
        """``max_abs_diff`` as a fraction of the largest reference logit."""
        return self.max_abs_diff / self.max_abs_logit if self.max_abs_logit else float("inf")

    def summary(self) -> str:
        return (f"max |logit diff| {self.max_abs_diff:.3g} (max |logit| {self.max_abs_logit:.3g}), top-1 "
                f"agreement {self.top1_agreement:.1%} over {self.positions} positions in {self.prompts} prompts")


def compare_logits(reference: Sequence[Any], candidate: Sequence[Any]) -> LogitComparison:
    """Compare per-prompt logits arrays (``[positions, vocab]``, numpy or torch) of two models.

    The candidate may carry fewer vocabulary columns than the reference only if the extra reference
    columns are padding rows (GGUF exports keep the model's full vocab, so the widths normally match).
    """
    import numpy as np

    worst, scale, agree, total = 0.0, 0.0, 0, 0
    for ref, cand in zip(reference, candidate, strict=True):
        ref_arr = np.asarray(ref, dtype=np.float32)
        cand_arr = np.asarray(cand, dtype=np.float32)
        if ref_arr.shape != cand_arr.shape:
            raise DsftError(f"logits shapes differ: reference {ref_arr.shape}, export {cand_arr.shape}")
        worst = max(worst, float(np.abs(ref_arr - cand_arr).max()))
        scale = max(scale, float(np.abs(ref_arr).max()))
        agree += int((ref_arr.argmax(-1) == cand_arr.argmax(-1)).sum())
        total += ref_arr.shape[0]
    return LogitComparison(worst, agree / max(total, 1), total, len(reference), scale)


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


def check_tolerance(comparison: LogitComparison, tolerance: float, what: str,
                    echo: Callable[[str], None] | None = None) -> LogitComparison:
    """Report the comparison and raise :class:`DsftError` if the max difference exceeds ``tolerance``."""
    if echo is not None:
        echo(f"verify {what}: {comparison.summary()} (tolerance {tolerance:g})")
    if not comparison.max_abs_diff <= tolerance:  # also catches NaN
        raise DsftError(
            f"verification failed for {what}: {comparison.summary()} exceeds tolerance {tolerance:g}; "
            "the export does not reproduce the trained model (rerun with --tolerance to accept, "
            "or --no-verify to skip)"
        )
    return comparison
