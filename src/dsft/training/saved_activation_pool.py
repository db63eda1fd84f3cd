"""Keep the tensors autograd saves in a reusable pool, so the CPU heap does not fragment around them.

On CPU, torch allocates through glibc's ``posix_memalign``, and glibc cannot reuse a freed aligned block
for a new aligned request of the same size (the request needs the size plus the alignment). A training
forward allocates, layer after layer, tensors it keeps for backward between temporaries it frees, so
every freed temporary becomes a hole that later tensors of the same shape do not fit: measured on
SmolLM2-135M at seq 2,048 (``benchmarks/bench_activation_memory.py``), 2.5 GiB of saved tensors
occupied a 4.6-5.7 GiB heap, and the resident set stays at the heap's size. Making glibc ``mmap``
every large tensor instead avoids the holes but pays a page fault per 4 KiB of every new tensor (43%
more CPU time per step, measured).

:class:`SavedActivationPool` copies each large tensor autograd saves during a forward into slabs it
allocates once (``mmap``-sized, so outside the heap) and reuses every micro-batch; the original is freed
as soon as the forward no longer needs it. The heap then holds only each layer's working set, and the
saved bytes sit contiguously in the slabs. One copy per saved tensor (each storage once, however many
autograd nodes save it), exact: backward reads bit-for-bit what it would have read.

A pool serves one forward at a time: backward must run before the next forward starts (as in training,
micro-batch after micro-batch); a tensor saved in an earlier forward raises when backward asks for it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# Storages below this many bytes stay where they are (copying them would not move the heap).
MIN_POOLED_BYTES = 1 << 20
# Slab size: above glibc's largest mmap threshold (32 MiB), so slabs never come from the heap.
SLAB_BYTES = 256 << 20
_ALIGNMENT = 64


class SavedActivationPool:
    """Slabs of bytes that hold the large tensors saved for backward during :meth:`saving`."""

    def __init__(self, min_bytes: int = MIN_POOLED_BYTES, slab_bytes: int = SLAB_BYTES) -> None:
        self.min_bytes = min_bytes
        self.slab_bytes = slab_bytes
        self.slabs: list[torch.Tensor] = []
        self.generation = 0
        self._slab = 0
        self._offset = 0
        # Storage address -> (weak reference to the storage, its copy): each storage is copied once per
        # forward; the weak reference tells a live storage from a new one at a freed one's address.
        self._copies: dict[int, tuple[Any, torch.Tensor]] = {}
        self._keep: set[int] = set()

    @property
    def pooled_bytes(self) -> int:
        """Bytes of slabs the pool holds (allocated once, reused by every forward)."""
        return sum(slab.numel() for slab in self.slabs)

    @contextmanager
    def saving(self, model: torch.nn.Module) -> Iterator[None]:
        """Route what autograd saves during a forward of ``model`` into the pool (its weights stay put)."""
        self.generation += 1
        self._slab, self._offset = 0, 0
        self._copies.clear()
        self._keep = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
                yield
        finally:
            self._copies.clear()

    def _take(self, nbytes: int) -> torch.Tensor:
        while self._slab < len(self.slabs) and self._offset + nbytes > self.slabs[self._slab].numel():
            self._slab, self._offset = self._slab + 1, 0
        if self._slab == len(self.slabs):
            self.slabs.append(torch.empty(max(self.slab_bytes, nbytes), dtype=torch.uint8))
        start = self._offset
        self._offset = start + -(-nbytes // _ALIGNMENT) * _ALIGNMENT
        return self.slabs[self._slab][start:start + nbytes]

    def pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if (tensor.device.type != "cpu" or storage.nbytes() < self.min_bytes or address in self._keep
                or tensor.is_sparse or tensor.is_quantized):
            return tensor
        known = self._copies.get(address)
        if known is not None and known[0]() is storage:
            copy = known[1]
        else:
            copy = self._take(storage.nbytes())
            copy.copy_(torch.empty(0, dtype=torch.uint8).set_(storage))
            self._copies[address] = (weakref.ref(storage), copy)
        return (self.generation, copy, tensor.dtype, tensor.shape, tensor.stride(), tensor.storage_offset())

    def unpack(self, packed: Any) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        generation, copy, dtype, shape, stride, offset = packed
        if generation != self.generation:
            raise RuntimeError("a tensor saved for backward was overwritten by a later forward: run backward "
                               "before the next forward when saved activations are pooled")
        typed = copy.view(dtype)  # as_strided's offset counts from the slab's start
        return typed.as_strided(shape, stride, typed.storage_offset() + offset)
