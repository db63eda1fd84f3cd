"""On a machine without CUDA, DeepSpeed (imported by accelerate when a model is saved or trained) would warn
"Setting accelerator to CPU ... unable to detect it" on every command. dsft tells it the accelerator is the
CPU first (dsft.models.loading.use_cpu_accelerator_without_cuda), so commands print no such line (DeepSpeed logs it on stdout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is DeepSpeed's on machines without CUDA")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sweep"))
from tiny_sweep_config import write_config  # the sweep tests' tiny config

WARNING = "Setting accelerator to CPU"


def _dsft(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """``dsft ARGS`` in a fresh process whose environment does not name DeepSpeed's accelerator."""
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    env.update(PYTHONPATH=str(ROOT / "src"), DSFT_CACHE=str(cache), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dsft", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_export_prints_no_accelerator_warning(tiny_model_dir, tmp_path: Path) -> None:
    result = _dsft(["export", str(tiny_model_dir("tiny-deepseek-llm")), "--format", "hf", "--out",
                    str(tmp_path / "hf")], tmp_path, tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stdout + result.stderr, result.stdout  # DeepSpeed logs it to stdout


@pytest.mark.slow
def test_sweep_prints_no_accelerator_warning(tmp_path: Path) -> None:
    """A fresh cache: the tiny preset is built in this process too, as a new user's first sweep does."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("max_steps: 2", "max_steps: 1"))
    result = _dsft(["sweep", str(config), "--grid", "train.lr=1e-3", "--out", str(tmp_path / "sweep")], tmp_path,
                   tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert WARNING not in result.stdout + result.stderr, result.stdout  # DeepSpeed logs it to stdout
