"""Measure the peak tensor memory of real CPU training steps (the planner's independent check).

``PeakTensorMemory`` is a TorchDispatchMode that sees every tensor an op creates (forward, backward,
optimizer), counts each storage once while it is alive (weak references free it), and records the
peak: the CPU analogue of ``torch.cuda.max_memory_allocated``. Tensors that exist before the mode is
entered (the model's parameters and buffers) are registered up front and form the baseline, so views
of them (``weight.t()``) are not counted again.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary


class PeakTensorMemory(TorchDispatchMode):
    """Live and peak bytes of tensor storages created inside the context (plus a baseline)."""

    def __init__(self, *existing: torch.nn.Module) -> None:
        super().__init__()
        self.live = 0
        # storage -> (bytes counted, weak reference whose callback un-counts them)
        self._storages: WeakIdKeyDictionary = WeakIdKeyDictionary()
        for module in existing:
            for tensor in list(module.parameters()) + list(module.buffers()):
                self._count(tensor.untyped_storage())
        self.peak = self.live

    def _count(self, storage: Any) -> None:
        known = self._storages.get(storage)
        if known is not None and known[0] == storage.nbytes():
            return
        self.live += storage.nbytes() - (known[0] if known else 0)
        self._storages[storage] = (storage.nbytes(), weakref.ref(storage, partial(self._freed, storage.nbytes())))

    def _freed(self, nbytes: int, _ref: Any) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            self._count(tensor.untyped_storage())
        self.peak = max(self.peak, self.live)
        return out

