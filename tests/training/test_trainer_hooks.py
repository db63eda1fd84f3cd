"""The private parts of transformers' Trainer dsft relies on still exist, and only one module uses them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import safetensors.torch
import transformers.trainer
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Trainer

from dsft.training import trainer_hooks
from dsft.training.run import RunTrainer
from dsft.training.trainer_hooks import (
    PRIVATE_HOOKS,
    SAVE_ORIGINAL_FORMAT_KWARG,
    UNDOCUMENTED_ATTRIBUTES,
)

SOURCE = inspect.getsource(transformers.trainer)
SRC = Path(__file__).resolve().parents[2] / "src" / "dsft"


def test_the_hooks_dsft_relies_on_are_named() -> None:
    assert set(PRIVATE_HOOKS) == {"_save_checkpoint", "_get_num_items_in_batch", "_loss_shifts_labels",
                                  "_prepare_inputs", "_get_grad_norm", "_load_from_checkpoint",
                                  "_issue_warnings_after_load"}
    assert set(UNDOCUMENTED_ATTRIBUTES) == {"model_accepts_loss_kwargs"}


def test_every_hook_still_exists_in_the_installed_transformers() -> None:
    for name in list(PRIVATE_HOOKS) + list(UNDOCUMENTED_ATTRIBUTES):
        # A method of the class, or an attribute the Trainer itself reads (self.NAME).
        assert callable(getattr(Trainer, name, None)) or f"self.{name}" in SOURCE, name
    for method in ("_save_checkpoint", "_get_num_items_in_batch", "_prepare_inputs", "_get_grad_norm",
                   "_load_from_checkpoint", "_issue_warnings_after_load"):
        assert callable(getattr(Trainer, method, None)), method
    assert SAVE_ORIGINAL_FORMAT_KWARG in inspect.signature(PreTrainedModel.save_pretrained).parameters


def test_no_other_module_touches_a_private_trainer_member() -> None:
    pattern = re.compile("|".join(re.escape(name) for name in list(PRIVATE_HOOKS) + [SAVE_ORIGINAL_FORMAT_KWARG]))
    own = Path(trainer_hooks.__file__).resolve()
    users = [str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
             if path.resolve() != own and pattern.search(path.read_text(encoding="utf-8"))]
    assert users == []


def test_a_checkpoint_holding_a_tied_head_once_is_not_reported_missing(tmp_path: Path, monkeypatch) -> None:
    # SmolLM2, Qwen2.5-0.5B..3B, Llama-3.2: lm_head.weight is the input embedding. save_pretrained writes it once,
    # and the Trainer's non-strict reload (a resume, eval.load_best) said "There were missing keys in the
    # checkpoint model loaded: ['lm_head.weight']" at the end of every full fine-tune of such a model.
    config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path)
    saved = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert "lm_head.weight" not in saved and model.lm_head.weight is model.model.embed_tokens.weight
    warnings: list[str] = []
    monkeypatch.setattr(transformers.trainer.logger, "warning", warnings.append)
    trainer = object.__new__(RunTrainer)
    trainer.model = model

    trainer._issue_warnings_after_load(model.load_state_dict(saved, strict=False))
    assert warnings == []

    del saved["model.norm.weight"]  # a weight missing for real is still reported, without the tied head
    trainer._issue_warnings_after_load(model.load_state_dict(saved, strict=False))
    assert len(warnings) == 1 and "model.norm.weight" in warnings[0] and "lm_head" not in warnings[0]
