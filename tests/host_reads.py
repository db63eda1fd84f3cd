"""Record the tensor reads that copy a value to the host (``float(t)``, ``t.item()``, ``bool(t)``, ...).

On a GPU each one waits for every kernel queued before it; a training step's hot path should have none.
On a CPU they cost nothing, so tests catch them by name with a torch function mode.
"""

from __future__ import annotations

from typing import Any

from torch.overrides import TorchFunctionMode

READS = {"__float__", "__int__", "__bool__", "__index__", "item", "tolist", "cpu", "numpy"}


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...`` then ``reads.names``: the host reads made inside, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in READS:
            self.names.append(name)
        return func(*args, **(kwargs or {}))
