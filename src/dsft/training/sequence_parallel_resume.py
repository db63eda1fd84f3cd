"""Resuming a sequence-parallel run in the middle of an epoch.

On resume the Trainer skips the micro-batches the checkpoint already trained with accelerate's
``skip_first_batches``, which rebuilds a ``DataLoader`` from the one it is given. Under DeepSpeed-Ulysses the
Trainer's loader is DeepSpeed's ``UlyssesSPDataLoaderAdapter``: it is not a ``DataLoader`` (no ``dataset``),
and every resume of a sequence-parallel run stopped with ``AttributeError: 'UlyssesSPDataLoaderAdapter' object
has no attribute 'dataset'``.

The adapter reads one batch from its own loader per rank, all-gathers them over the SP group and hands out one
micro-batch per gathered row: ``sp`` micro-batches per batch of its loader. :func:`skipping_sequence_parallel`
makes the Trainer's skip do, for that adapter, what it does for a ``DataLoader``: the whole batches are skipped
in the adapter's loader with accelerate's own ``skip_first_batches`` (read, not trained), for this pass only,
and a remainder of fewer than ``sp`` micro-batches is drawn and dropped. The next micro-batch is then the one
the uninterrupted run trained next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import transformers.trainer
from accelerate import skip_first_batches


class _SkippedOnce:
    """``loader`` whose next pass starts ``skip`` batches in (``skipped``); later passes (epochs) are whole."""

    def __init__(self, loader: Any, skipped: Any) -> None:
        self.loader, self.skipped = loader, skipped

    def __iter__(self) -> Iterator[Any]:
        source, self.skipped = (self.skipped or self.loader), None
        return iter(source)

    def __len__(self) -> int:
        return len(self.loader)


def _is_ulysses_loader(loader: Any) -> bool:
    return type(loader).__name__ == "UlyssesSPDataLoaderAdapter" and hasattr(loader, "dl")


def skip_micro_batches(loader: Any, micro_batches: int) -> Any:
    """``loader`` (a Ulysses adapter) positioned after its first ``micro_batches``; other loaders as
    accelerate's ``skip_first_batches`` returns them."""
    if not _is_ulysses_loader(loader):
        return skip_first_batches(loader, micro_batches)
    whole, remainder = divmod(micro_batches, loader.sp_world_size)
    if whole:
        loader.dl = _SkippedOnce(loader.dl, skip_first_batches(loader.dl, whole))
        loader.iter = iter(loader.dl)
    for _ in range(remainder):
        next(loader)
    return loader


@contextmanager
def skipping_sequence_parallel() -> Iterator[None]:
    """While the Trainer runs an epoch: its resume skip handles the Ulysses adapter (module docstring)."""
    stock = transformers.trainer.skip_first_batches
    transformers.trainer.skip_first_batches = skip_micro_batches
    try:
        yield
    finally:
        transformers.trainer.skip_first_batches = stock
