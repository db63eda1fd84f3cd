"""Checkpoint directories made of arbitrary bytes, with the files a LoRA checkpoint holds and its manifest: what
checkpoint checks read (names, sizes, hashes, trainer state), without a training run to write them."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.training.checkpointing import write_manifest


def fake_checkpoint(root: Path, step: int, weights: str = "adapter_model.safetensors") -> Path:
    """A checkpoint directory with the files a LoRA checkpoint holds (contents are arbitrary bytes)."""
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / weights).write_bytes(bytes(range(256)) * 64)
    (path / "adapter_config.json").write_text('{"r": 8}')
    (path / "optimizer.pt").write_bytes(b"\x01" * 5000)
    (path / "scheduler.pt").write_bytes(b"\x02" * 300)
    (path / "rng_state.pth").write_bytes(b"\x03" * 100)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    write_manifest(path)
    return path
