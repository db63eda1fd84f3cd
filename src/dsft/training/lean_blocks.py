"""Which of dsft's lean blocks each module has installed, and which of them ran.

A lean block (:mod:`dsft.training.lean_swiglu`, :mod:`dsft.training.lean_rmsnorm`, :mod:`dsft.training.lean_lora`)
checks at every call that it reproduces its module as configured then, and otherwise runs the module's own
forward, so installed is not used: the fused RMSNorm is installed on every norm and runs on CUDA only, and a
LoRA layer inside a lean SwiGLU MLP is computed by the MLP, never by its own fused forward. What a benchmark
reports as switched on is what ran (:func:`lean_blocks_used`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

BLOCKS_ATTRIBUTE = "dsft_lean_blocks"  # on each module a lean block is installed in: {block: whether it ran}


def note_installed(module: nn.Module, block: str) -> None:
    """Record that ``block`` (the name a report gives it, e.g. ``"rms_norm_cuda"``) is installed in ``module``."""
    blocks = vars(module).get(BLOCKS_ATTRIBUTE)
    if blocks is None:
        blocks = {}
        setattr(module, BLOCKS_ATTRIBUTE, blocks)
    blocks.setdefault(block, False)


def note_ran(module: nn.Module, block: str) -> None:
    """Record that ``block`` took its lean path in ``module`` (called at every such call: a dict store, cheap
    beside the kernels it launches, and a side effect torch.compile replays)."""
    getattr(module, BLOCKS_ATTRIBUTE)[block] = True


def said(block: str, ran: int, installed: int, device: str) -> str:
    """One block as a report lists it: the modules it ran in, or that it ran in none on ``device``.

    >>> said("swiglu_mlp", 30, 30, "cpu"), said("lean_lora", 28, 196, "cuda")
    ('swiglu_mlp x30', 'lean_lora x28 of 196')
    >>> said("rms_norm_cuda", 0, 61, "cpu")
    'rms_norm_cuda x61 installed, not used on cpu'
    """
    if ran == installed:
        return f"{block} x{ran}"
    if ran:
        return f"{block} x{ran} of {installed}"
    return f"{block} x{installed} installed, not used on {device}"


def lean_blocks_used(model: Any, device: str) -> list[str]:
    """The lean blocks installed in ``model``'s modules, in the order first met, each as :func:`said` lists it
    after the model ran on ``device`` (empty where none is installed)."""
    installed: dict[str, int] = {}
    ran: dict[str, int] = {}
    for module in model.modules():
        for block, did in (vars(module).get(BLOCKS_ATTRIBUTE) or {}).items():
            installed[block] = installed.get(block, 0) + 1
            ran[block] = ran.get(block, 0) + int(did)
    return [said(block, ran[block], count, device) for block, count in installed.items()]
