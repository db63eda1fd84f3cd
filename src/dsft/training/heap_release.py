"""Return the CPU heap's free pages to the kernel a few times per training pass (glibc only).

torch allocates CPU tensors with ``posix_memalign``; glibc cannot put a new aligned block into a freed one
of the same size, so a forward's temporaries leave holes the next layers do not fill and the heap grows
well past what is in use. The pages of those holes stay resident (counted in RSS) until something gives
them back: ``malloc_trim(0)`` does, without moving any live allocation. Measured on SmolLM2-135M at seq
2,048 (``benchmarks/bench_activation_memory.py``, one step): the lean blocks alone peak at 4.1 GiB RSS,
with the saved-activation pool and a release after every fifth layer at 3.1 GiB (docs/performance.md).

Each release costs the page faults of re-touching what is reused afterwards, so :class:`HeapRelease`
releases about ``passes`` times per forward and per backward (after every ``layers // passes``-th decoder
layer), not after every layer (about 25% more CPU time per step, measured once by hand without the pool).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Sequence
from typing import Any

import torch

RELEASES_PER_PASS = 6


def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to release this way
        return None


_MALLOC_TRIM = _malloc_trim()


def release_free_heap() -> bool:
    """Give glibc's free heap pages back to the kernel; False where the C library cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class HeapRelease:
    """Forward hooks on every ``len(layers) // passes``-th layer that release the free heap after its forward
    and, through a hook on its output's gradient, after its backward (training passes only)."""

    def __init__(self, layers: Sequence[torch.nn.Module], passes: int = RELEASES_PER_PASS) -> None:
        every = max(1, len(layers) // max(1, passes))
        self.handles = [layer.register_forward_hook(self._after_forward)
                        for index, layer in enumerate(layers) if index % every == every - 1]

    @staticmethod
    def _after_forward(_module: Any, _args: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        release_free_heap()
        hidden = output[0] if isinstance(output, tuple) else output
        if isinstance(hidden, torch.Tensor) and hidden.requires_grad:
            hidden.register_hook(_release_in_backward)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _release_in_backward(_grad: torch.Tensor) -> None:
    release_free_heap()
