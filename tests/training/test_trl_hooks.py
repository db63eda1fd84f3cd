"""The private parts of TRL's trainers dsft relies on still exist, with the signatures dsft overrides."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import trl
from trl import DPOTrainer, GRPOTrainer, KTOTrainer

from dsft.training import trl_hooks
from dsft.training.trl_hooks import PRIVATE_TRL_HOOKS

SRC = Path(__file__).resolve().parents[2] / "src" / "dsft"
CLASSES = {"DPOTrainer": DPOTrainer, "KTOTrainer": KTOTrainer, "GRPOTrainer": GRPOTrainer}


def test_the_hooks_dsft_relies_on_are_named() -> None:
    assert {cls: set(hooks) for cls, hooks in PRIVATE_TRL_HOOKS.items()} == {
        "DPOTrainer": {"_prepare_dataset"}, "KTOTrainer": {"_prepare_dataset"}, "GRPOTrainer": {"_tokenize_prompts"},
    }


def test_every_hook_exists_with_the_overridden_signature() -> None:
    ours = {"_prepare_dataset": trl_hooks.PretokenizedPairsHooks._prepare_dataset,
            "_tokenize_prompts": trl_hooks.RenderedPromptHooks._tokenize_prompts}
    for cls_name, hooks in PRIVATE_TRL_HOOKS.items():
        for name in hooks:
            theirs = getattr(CLASSES[cls_name], name, None)
            assert callable(theirs), f"trl {trl.__version__}: {cls_name}.{name} is gone"
            assert list(inspect.signature(theirs).parameters) == list(inspect.signature(ours[name]).parameters)
    # KTO's KL completions, repeated in the hook, are built from these names in TRL.
    assert "KL_completion_ids" in inspect.getsource(KTOTrainer._prepare_dataset)
    assert "calculate_KL" in inspect.getsource(KTOTrainer.__init__)


def test_only_the_adapter_module_overrides_private_trl_members() -> None:
    private = re.compile(r"def (_prepare_dataset|_tokenize_prompts)\b")
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if private.search(p.read_text(encoding="utf-8")))
    assert users == ["training/trl_hooks.py"]
