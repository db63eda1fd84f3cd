"""The private parts of transformers' Trainer dsft relies on still exist, and only one module uses them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import transformers.trainer
from transformers import PreTrainedModel, Trainer

from dsft.training import trainer_hooks
from dsft.training.trainer_hooks import PRIVATE_HOOKS, SAVE_ORIGINAL_FORMAT_KWARG, UNDOCUMENTED_ATTRIBUTES

SOURCE = inspect.getsource(transformers.trainer)
SRC = Path(__file__).resolve().parents[2] / "src" / "dsft"


def test_the_hooks_dsft_relies_on_are_named() -> None:
    assert set(PRIVATE_HOOKS) == {"_save_checkpoint", "_get_num_items_in_batch", "_loss_shifts_labels",
                                  "_prepare_inputs", "_get_grad_norm", "_load_from_checkpoint"}
    assert set(UNDOCUMENTED_ATTRIBUTES) == {"model_accepts_loss_kwargs"}


def test_every_hook_still_exists_in_the_installed_transformers() -> None:
    for name in list(PRIVATE_HOOKS) + list(UNDOCUMENTED_ATTRIBUTES):
        # A method of the class, or an attribute the Trainer itself reads (self.NAME).
        assert callable(getattr(Trainer, name, None)) or f"self.{name}" in SOURCE, name
    for method in ("_save_checkpoint", "_get_num_items_in_batch", "_prepare_inputs", "_get_grad_norm",
                   "_load_from_checkpoint"):
        assert callable(getattr(Trainer, method, None)), method
    assert SAVE_ORIGINAL_FORMAT_KWARG in inspect.signature(PreTrainedModel.save_pretrained).parameters


def test_no_other_module_touches_a_private_trainer_member() -> None:
    pattern = re.compile("|".join(re.escape(name) for name in list(PRIVATE_HOOKS) + [SAVE_ORIGINAL_FORMAT_KWARG]))
    own = Path(trainer_hooks.__file__).resolve()
    users = [str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
             if path.resolve() != own and pattern.search(path.read_text(encoding="utf-8"))]
    assert users == []
