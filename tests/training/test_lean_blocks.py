"""A lean block is installed in a module and runs only where it reproduces it: the report of what ran
(dsft.training.lean_blocks) counts the modules whose lean path was taken, not the ones it was installed in."""

from __future__ import annotations

import doctest

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from dsft.training import lean_blocks, lean_rmsnorm
from dsft.training.lean_activations import use_lean_activations
from dsft.training.lean_blocks import lean_blocks_used


def test_worked_examples() -> None:
    result = doctest.testmod(lean_blocks)
    assert result.failed == 0 and result.attempted > 0


def _qwen2() -> torch.nn.Module:
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    assert use_lean_activations(model) == ["swiglu_mlp x2", "rms_norm_cuda x5"]  # installed
    return model


@pytest.mark.parametrize("fused", [False, True])
def test_what_ran_is_what_took_the_lean_path(monkeypatch: pytest.MonkeyPatch, fused: bool) -> None:
    """On this CPU the norms run their stock forward; where torch has the fused kernel (CUDA; here made to say
    so) they run the lean one, and are listed as run."""
    monkeypatch.setattr(lean_rmsnorm, "has_fused_rms_norm", lambda x: fused)
    model = _qwen2()
    assert lean_blocks_used(model, "cpu") == ["swiglu_mlp x2 installed, not used on cpu",
                                              "rms_norm_cuda x5 installed, not used on cpu"]
    ids = torch.arange(10).view(1, -1)
    model(input_ids=ids, labels=ids).loss.backward()
    norms = "rms_norm_cuda x5" if fused else "rms_norm_cuda x5 installed, not used on cpu"
    assert lean_blocks_used(model, "cpu") == ["swiglu_mlp x2", norms]
    assert lean_blocks_used(torch.nn.Linear(2, 2), "cpu") == []  # nothing installed, nothing listed
