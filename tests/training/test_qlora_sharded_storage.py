"""QLoRA under ZeRO-3 or FSDP stores its 4-bit weights in the dtype of the rest of the model.

FSDP shards floating-point parameters only (accelerate leaves uint8 ``Params4bit`` out of the sharding, whole on
every rank), and ZeRO-3 fetches a module's parameters together (its all-reduce fetch in one buffer of one dtype).
bitsandbytes packs the 4-bit values into ``bnb_4bit_quant_storage`` elements (uint8 unless set), so a sharded
QLoRA run must set it to the compute dtype. dsft never set it. bitsandbytes cannot run here (no CUDA): these
tests check the configuration dsft builds and passes to ``from_pretrained``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import BitsAndBytesConfig

from dsft.config import DsftConfig
from dsft.models.loading import bnb_config_kwargs
from dsft.training import setup
from dsft.training.distributed import shards_parameters


class _Loaded(Exception):
    """Raised by the stand-in loader once it has recorded its arguments: nothing past the load runs."""


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_a_sharded_4bit_config_stores_the_packed_weights_in_the_compute_dtype(dtype: torch.dtype) -> None:
    config = BitsAndBytesConfig(**bnb_config_kwargs("4bit", dtype, sharded=True))
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == dtype
    assert config.bnb_4bit_quant_storage == dtype


def test_an_unsharded_4bit_config_keeps_bitsandbytes_uint8_storage() -> None:
    config = BitsAndBytesConfig(**bnb_config_kwargs("4bit", torch.bfloat16))
    assert config.bnb_4bit_quant_storage == torch.uint8
    assert bnb_config_kwargs("8bit", torch.bfloat16, sharded=True) == {"load_in_8bit": True}


@pytest.mark.parametrize("train,world_size,sharded", [
    ({"distributed": "deepspeed", "zero_stage": 3}, 2, True),
    ({"distributed": "fsdp"}, 2, True),
    ({"distributed": "deepspeed", "zero_stage": 2}, 2, False),
    ({"distributed": "ddp"}, 2, False),
    ({}, 1, False),
])
def test_shards_parameters_is_zero3_or_fsdp(train: dict[str, Any], world_size: int, sharded: bool) -> None:
    cfg = DsftConfig.model_validate({"model": {"name_or_path": "m"}, "train": train})
    assert shards_parameters(cfg.train, world_size) is sharded


@pytest.mark.parametrize("method,train,sharded", [
    ("qlora", {"distributed": "deepspeed", "zero_stage": 3}, True),
    ("qlora", {"distributed": "fsdp"}, True),
    ("qlora", {"distributed": "deepspeed", "zero_stage": 2}, False),
    ("lora", {"distributed": "fsdp"}, False),  # nothing quantised: nothing to store
])
def test_build_model_loads_a_sharded_qlora_base_for_sharding(method: str, train: dict[str, Any], sharded: bool,
                                                             monkeypatch) -> None:
    seen: dict[str, Any] = {}

    def load_model(path: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise _Loaded

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(setup, "check_qlora", lambda: None)  # no CUDA or bitsandbytes here; nothing loads
    monkeypatch.setattr(setup, "load_model", load_model)
    cfg = DsftConfig.model_validate({"model": {"name_or_path": "m"}, "train": {"method": method, **train}})
    with pytest.raises(_Loaded):
        setup.build_model(cfg, model_dir="m", tokenizer=None)  # type: ignore[arg-type]
    assert seen["quantization"] == ("4bit" if method == "qlora" else None)
    assert seen["sharded"] is sharded
