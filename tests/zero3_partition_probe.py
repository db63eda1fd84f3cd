"""``dsft train``'s run (:func:`dsft.training.run.run_training`) stopped after its first step, recording on every
rank what the model holds when the Trainer is given it: after the build, before DeepSpeed starts training.

Run under torchrun by tests/distributed/test_zero3_partitioned_load.py:
``python zero3_partition_probe.py CONFIG OUT`` writes ``OUT/partition-rank-N.json`` for every rank N.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from dsft.config import load_config
from dsft.training.run import run_training


def held_by_rank(model: Any) -> dict[str, int]:
    """Elements this rank holds (a ZeRO-3 parameter's partition, another parameter whole), the model's real
    elements (``ds_numel`` under ZeRO-3), and how many parameters are partitioned and not gathered."""
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    params = list(model.parameters())
    zero = [p for p in params if hasattr(p, "ds_id")]
    return {
        "held": sum(p.ds_tensor.numel() if hasattr(p, "ds_id") else p.numel() for p in params),
        "elements": sum(getattr(p, "ds_numel", p.numel()) for p in params),
        "parameters": len(params),
        "frozen": sum(not p.requires_grad for p in params),
        "partitioned": len(zero),
        "frozen_partitioned": sum(not p.requires_grad for p in zero),
        "not_available": sum(p.ds_status == ZeroParamStatus.NOT_AVAILABLE for p in zero),
    }


class PartitionProbe(TrainerCallback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_init_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        rank = int(os.environ.get("RANK", "0"))
        (self.out / f"partition-rank-{rank}.json").write_text(json.dumps(held_by_rank(model)), encoding="utf-8")
        return control


if __name__ == "__main__":
    config, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    run_training(load_config(config), out / "run", progress=False, extra_callbacks=[PartitionProbe(out)],
                 should_stop=lambda step: step >= 1)
