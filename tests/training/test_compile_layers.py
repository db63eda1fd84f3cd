"""train.compile: layers compiles each decoder layer on its own: the same training step as eager, SFT only."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters
from transformers import Qwen2Config, Qwen2ForCausalLM

from dsft.config import load_config
from dsft.config.schema import LoraConfig
from dsft.errors import ConfigError
from dsft.models.lora import apply_lora
from dsft.training.collators import PackedCollator, pack_row
from dsft.training.lean_activations import use_lean_activations
from dsft.training.lean_lora import use_lean_lora
from dsft.training.objective_checks import objective_problems
from dsft.training.segment_attention import select_segment_attention
from dsft.training.trainer import compile_decoder_layers

MODEL_INPUTS = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def test_the_config_takes_true_false_and_layers() -> None:
    assert load_config(None, ["train.compile=layers"]).train.compile == "layers"
    assert load_config(None, ["train.compile=true"]).train.compile is True
    assert load_config(None, []).train.compile is False
    with pytest.raises(ConfigError, match="train.compile"):
        load_config(None, ["train.compile=regional"])


def test_layers_is_refused_for_objectives_trl_trains() -> None:
    problems = objective_problems(load_config(None, ["train.objective=dpo", "train.compile=layers"]))
    assert any(p.startswith("train.compile=layers: for SFT runs") for p in problems)
    assert not any("compile" in p for p in objective_problems(load_config(None, ["train.objective=dpo",
                                                                                 "train.compile=true"])))


def test_build_model_compiles_each_layer_for_layers_only(tiny_model_dir, tmp_path) -> None:
    """layers: build_model compiles each layer, the Trainer's whole-model torch_compile stays off; true: the
    reverse."""
    from dsft.models.loading import load_tokenizer
    from dsft.training.setup import build_model, build_training_arguments

    model_dir = tiny_model_dir("tiny-deepseek-v3")
    for value, layers_compiled, whole_model in (("layers", True, False), ("true", False, True)):
        cfg = load_config(None, [f"train.compile={value}"])
        model = build_model(cfg, model_dir, load_tokenizer(model_dir))
        layers = model.base_model.model.model.layers
        assert [layer._compiled_call_impl is not None for layer in layers] == [layers_compiled] * len(layers)
        assert build_training_arguments(cfg, tmp_path / value, False, model).torch_compile is whole_model


def _lora_model() -> torch.nn.Module:
    """A tiny Qwen2 as dsft trains it: segment attention, lean blocks, LoRA with a nonzero B."""
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    model.config.use_cache = False
    select_segment_attention(model, packing=True)
    use_lean_activations(model)
    model = apply_lora(model, LoraConfig())
    use_lean_lora(model)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    return model


@pytest.mark.slow  # compiling on CPU takes tens of seconds
def test_compiled_layers_train_as_the_eager_ones() -> None:
    """One packed row of four examples: loss and every LoRA gradient as eager, with both layers compiled."""
    model = _lora_model()
    examples = [{"input_ids": list(range(3, 3 + n)), "labels": list(range(3, 3 + n))} for n in (11, 17, 6, 23)]
    batch = PackedCollator(pad_id=0, flatten=True)([pack_row(examples)])
    inputs = {key: value for key, value in batch.items() if key in MODEL_INPUTS}

    def step() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        loss = model(**inputs, labels=batch["labels"]).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    eager_loss, eager_grads = step()
    assert compile_decoder_layers(model) == 2
    counters.clear()
    compiled_loss, compiled_grads = step()
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo traced the layers (no silent eager run)
    assert torch.allclose(compiled_loss, eager_loss, rtol=1e-5)
    assert compiled_grads.keys() == eager_grads.keys() and len(eager_grads) == 2 * 2 * 7  # A and B, 7 per layer
    for name, grad in eager_grads.items():
        assert torch.allclose(compiled_grads[name], grad, rtol=1e-4, atol=1e-6), name
