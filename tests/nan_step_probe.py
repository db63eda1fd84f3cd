"""``dsft train``'s run (:func:`dsft.training.run.run_training`) whose loss becomes NaN on rank 1 in the first
micro-batch of optimizer step 2 (its input embeddings' output is made NaN once), recording on every rank the
trainable weights before that step and when the run stopped.

Run under torchrun by tests/distributed/test_nan_guard_deepspeed.py: ``python nan_step_probe.py CONFIG OUT`` writes
``OUT/weights-rank-N-before.pt`` and ``OUT/weights-rank-N-stopped.pt`` and prints ``stopped: MESSAGE``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from dsft.config import load_config
from dsft.errors import DsftError
from dsft.training.run import run_training

NAN_STEP = 2
RANK = int(os.environ.get("RANK", "0"))


def trainable_weights(model: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


class NanLossAtStep(TrainerCallback):
    """Before optimizer step NAN_STEP: keeps the weights, and on rank 1 makes the next forward's loss NaN."""

    def __init__(self) -> None:
        self.model: Any = None
        self.before: dict[str, torch.Tensor] = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        self.model = model
        if state.global_step == NAN_STEP - 1:
            self.before = trainable_weights(model)
            if RANK == 1:
                def poison_once(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
                    handle.remove()
                    return output * float("nan")
                handle = model.get_input_embeddings().register_forward_hook(poison_once)
        return control


if __name__ == "__main__":
    config, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    probe = NanLossAtStep()
    try:
        run_training(load_config(config), out / "run", progress=False, extra_callbacks=[probe])
    except DsftError as error:
        print(f"stopped: {error}", flush=True)
    torch.save(probe.before, out / f"weights-rank-{RANK}-before.pt")
    torch.save(trainable_weights(probe.model), out / f"weights-rank-{RANK}-stopped.pt")
