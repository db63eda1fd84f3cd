"""Bounds on the two caches of compiled CPU matmul kernels that PyTorch's bf16 path fills, one entry per shape.

On CPU a bf16 (or fp16) matmul runs on oneDNN through ideep, and both keep the kernel built for each new shape:
oneDNN's primitive cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) and ideep's own (``LRU_CACHE_CAPACITY``), 1,024
entries each by default, about a third of a MiB an entry. Packed rows, padding-free batches and MoE routing give
a matmul a new number of rows almost every micro-batch, so a bf16 CPU run's resident memory grew by about 50 MiB
a step until both caches filled (measured on SmolLM2-135M, LoRA, rows of about 1,024 tokens: 1,455 -> 2,003 MiB
over 10 steps; fp32, which does not use oneDNN here, stayed flat). A micro-batch reuses a few dozen shapes
(each weight's shape in every layer, forward and backward), which 64 entries hold: on that run, 52.4 supervised
tokens per CPU-second at 64 entries, 49.9 at 256 and 45.5-47.8 unbounded (other loads: no slowdown seen), resident
memory flat at 1,417-1,435 MiB.

Both are read once, at the first oneDNN matmul of the process, so :func:`bound_onednn_caches` must run before
it: ``dsft``'s command line calls it first thing, and training calls it again for the library (a no-op once a
bf16 matmul has run). A value the user set is kept. This module imports nothing from dsft.
"""

from __future__ import annotations

import os

CAPACITY = "64"
VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")

_set_here: set[str] = set()


def bound_onednn_caches() -> None:
    """Set both capacities to :data:`CAPACITY` where the environment does not set them (child processes inherit
    them)."""
    for name in VARIABLES:
        if name not in os.environ:
            os.environ[name] = CAPACITY
            _set_here.add(name)


def environment_without_bounds() -> dict[str, str]:
    """This process's environment less the capacities :func:`bound_onednn_caches` set (those the user set stay):
    what another tool's process gets when dsft starts it as that tool runs by itself (``dsft bench train``'s
    peers).

    >>> import os
    >>> os.environ.pop("LRU_CACHE_CAPACITY", None) and None
    >>> bound_onednn_caches()
    >>> os.environ["LRU_CACHE_CAPACITY"], "LRU_CACHE_CAPACITY" in environment_without_bounds()
    ('64', False)
    """
    return {name: value for name, value in os.environ.items() if name not in _set_here}
