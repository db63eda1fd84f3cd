"""Check an export against the trained model: same prompts in, logits compared position by position.

Every export is verified unless the user opts out: peers ship merged checkpoints and GGUF files that
nobody compared with the model that was trained. The prompts are rendered with the run's own chat
template (so the special tokens training saw are exercised) plus raw text with Chinese and digits
(so the tokenizer's pre-tokenizer paths are exercised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dsft.data.conversation import Conversation, Message
from dsft.errors import DsftError
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


@dataclass(frozen=True)
class LogitComparison:
    """How far an export's next-token logits are from the reference, over every prompt position."""

    max_abs_diff: float
    top1_agreement: float  # fraction of positions whose argmax token is the same
    positions: int
    prompts: int
    max_abs_logit: float = 0.0  # scale of the reference logits, to read max_abs_diff against
    mean_kl: float = 0.0  # mean over positions of KL(reference || export) of the next-token distributions, nats

    @property
    def relative_diff(self) -> float:
        """``max_abs_diff`` as a fraction of the largest reference logit."""
        return self.max_abs_diff / self.max_abs_logit if self.max_abs_logit else float("inf")

    def summary(self) -> str:
        return (f"max |logit diff| {self.max_abs_diff:.3g} (max |logit| {self.max_abs_logit:.3g}), top-1 "
                f"agreement {self.top1_agreement:.1%}, mean KL {self.mean_kl:.2g} nats over {self.positions} "
                f"positions in {self.prompts} prompts")


class LogitBound(Protocol):
    """A pass criterion on a :class:`LogitComparison`; each kind states what it needs and judges for itself."""

    def accepts(self, comparison: LogitComparison) -> bool:
        """Whether the export passes (NaN figures must fail)."""
        ...

    def describe(self, comparison: LogitComparison) -> str:
        """What the bound needs, as printed after the measured figures, e.g. ``max |logit diff| <= 0.001``."""
        ...

    def refusal(self, comparison: LogitComparison) -> str:
        """Why a comparison it does not accept fails, for the error message."""
        ...


@dataclass(frozen=True)
class AbsoluteBound:
    """Pass criterion ``max |logit difference| <= max_abs_diff`` (float32 exports, adapters, ``--tolerance X``)."""

    max_abs_diff: float

    def describe(self, comparison: LogitComparison) -> str:
        return f"tolerance {self.max_abs_diff:g}"

    def refusal(self, comparison: LogitComparison) -> str:
        return f"max |logit diff| exceeds tolerance {self.max_abs_diff:g}"

    def accepts(self, comparison: LogitComparison) -> bool:
        return comparison.max_abs_diff <= self.max_abs_diff  # NaN fails


@dataclass(frozen=True)
class DistributionBound:
    """Pass criteria for quantised exports, on the next-token distributions rather than raw logits.

    Rounding weights to 8 bits moves individual logits of a real model by several units (measured: 2.7-4.3
    on SmolLM2-135M, as much as llama.cpp's own q8_0 file of it) while the distributions barely move;
    the bugs verification exists for (wrong rope layout, misplaced experts, wrong tokenizer) collapse
    top-1 agreement and raise the KL by orders of magnitude.
    """

    min_top1: float
    max_mean_kl: float

    def describe(self, comparison: LogitComparison) -> str:
        return f"needs top-1 agreement >= {self.min_top1:.0%} and mean KL <= {self.max_mean_kl:g} nats"

    def refusal(self, comparison: LogitComparison) -> str:
        return self.describe(comparison)

    def accepts(self, comparison: LogitComparison) -> bool:
        return comparison.top1_agreement >= self.min_top1 and comparison.mean_kl <= self.max_mean_kl  # NaN fails


@dataclass(frozen=True)
class RelativeBound:
    """Pass criterion for half-precision exports: a max |logit difference| that grows with the logits' scale,
    ``max(floor, max_fraction * largest reference logit)``.

    Rounding every weight to ``p`` significant bits moves each logit by a few units of 2^-p of the logits'
    scale, so an absolute bound that fits a tiny model refuses a real one. Measured on SmolLM2-135M-Instruct
    (max |logit| 40.9), correct exports: HF float16 0.055 (0.13%, 2.8 units of 2^-11), HF bfloat16 0.30
    (0.73%, 1.9 units of 2^-8), GGUF float16 0.12 (0.29%, 6 units), GGUF bfloat16 0.55 (1.35%, 3.5 units;
    llama.cpp also rounds the activations to the weights' type); the former absolute bounds (HF 0.05 / 0.25,
    GGUF 0.1 / 0.25) refused all four. They stay as the floor: on a tiny MoE model a token whose expert
    choice the rounding changes moves its logits far more than the rest (a full fine-tune of tiny V3 as
    bfloat16: 0.054 on logits of 0.92, 5.8%).
    """

    max_fraction: float
    floor: float

    def limit(self, comparison: LogitComparison) -> float:
        return max(self.floor, self.max_fraction * comparison.max_abs_logit)

    def describe(self, comparison: LogitComparison) -> str:
        return (f"needs max |logit diff| <= {self.limit(comparison):.3g} (the larger of {self.floor:g} and "
                f"{self.max_fraction:.2%} of the largest reference logit)")

    def refusal(self, comparison: LogitComparison) -> str:
        return self.describe(comparison)

    def accepts(self, comparison: LogitComparison) -> bool:
        return comparison.max_abs_diff <= self.limit(comparison)  # NaN fails


def as_bound(tolerance: float | LogitBound) -> LogitBound:
    """A bare number is a max |logit difference| (what ``--tolerance X`` and library callers pass)."""
    return AbsoluteBound(float(tolerance)) if isinstance(tolerance, (int, float)) else tolerance


def compare_logits(reference: Sequence[Any], candidate: Sequence[Any]) -> LogitComparison:
    """Compare per-prompt logits arrays (``[positions, vocab]``, numpy or torch) of two models.

    The candidate may carry fewer vocabulary columns than the reference only if the extra reference
    columns are padding rows (GGUF exports keep the model's full vocab, so the widths normally match).
    """
    import numpy as np

    worst, scale, agree, total, kl_sum = 0.0, 0.0, 0, 0, 0.0
    for ref, cand in zip(reference, candidate, strict=True):
        ref_arr = np.asarray(ref, dtype=np.float32)
        cand_arr = np.asarray(cand, dtype=np.float32)
        if ref_arr.shape != cand_arr.shape:
            raise DsftError(f"logits shapes differ: reference {ref_arr.shape}, export {cand_arr.shape}")
        # np.max, not max(): NaN logits must make the difference NaN (which every bound refuses); Python's
        # max(0.0, nan) is 0.0, which reported an export of NaN logits as a perfect match.
        worst = float(np.max([worst, np.abs(ref_arr - cand_arr).max()]))
        scale = max(scale, float(np.abs(ref_arr).max()))
        agree += int((ref_arr.argmax(-1) == cand_arr.argmax(-1)).sum())
        kl_sum += float(_kl_rows(ref_arr, cand_arr).sum())
        total += ref_arr.shape[0]
    return LogitComparison(worst, agree / max(total, 1), total, len(reference), scale, kl_sum / max(total, 1))


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
    number bounds the max |logit difference|; else a :class:`LogitBound` (:class:`RelativeBound` for
    half-precision defaults, :class:`DistributionBound` for quantised exports)."""
    bound = as_bound(tolerance)
    if echo is not None:
        echo(f"verify {what}: {comparison.summary()} ({bound.describe(comparison)})")
    if not bound.accepts(comparison):
        raise VerificationError(
            f"verification failed for {what}: {comparison.summary()}; {bound.refusal(comparison)}: the export "
            "does not reproduce the trained model (rerun with --tolerance X to bound the max |logit difference| "
            "instead, or --no-verify to skip)"
        )
    return comparison
