"""Which attention kernel packed training runs on, decided without importing torch (preflight and
``dsft config show`` ask before anything heavy loads; :mod:`dsft.training.segment_attention` acts on it)."""

from __future__ import annotations

SEGMENT_ATTENTION = "dsft_segments"


def uses_segment_attention(packing: bool, requested: str, loaded: str | None) -> bool:
    """Whether packed training runs on ``dsft_segments``: only where the choice was left to dsft
    (``model.attn_implementation: auto``) and the model loads with sdpa because flash-attn is absent. An
    explicit ``sdpa`` keeps transformers' masked sdpa.

    Under DeepSpeed-Ulysses sequence parallelism it is the core attention Ulysses wraps: Ulysses discards the
    mask and hands it the row's gathered ``position_ids``, from whose restarts it finds the examples.

    >>> uses_segment_attention(True, "auto", "sdpa"), uses_segment_attention(True, "sdpa", "sdpa")
    (True, False)
    """
    return packing and requested == "auto" and loaded == "sdpa"
