"""Generated DeepSpeed JSON and FSDP settings: accepted by DeepSpeed's own parser, batch sizes consistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dsft.config.schema import TrainConfig
import torch

from dsft.errors import ConfigError, UnsupportedError
from dsft.training import distributed
from dsft.training.distributed import (
    apply_zero3_leaf_modules, deepspeed_config, distributed_training_args, fsdp_settings, moe_block_classes,
    resolve_strategy, unapplied_settings_notice,
)

STAGES = [(0, "none"), (1, "none"), (1, "optimizer"), (2, "none"), (2, "optimizer"), (3, "none"),
          (3, "optimizer"), (3, "optimizer+param")]


@pytest.mark.parametrize("stage,offload", STAGES)
@pytest.mark.parametrize("world_size", [1, 2, 16])
def test_deepspeed_json_validates_with_deepspeed_config(stage: int, offload: str, world_size: int, monkeypatch) -> None:
    import deepspeed.runtime.config as ds_config

    # DeepSpeedConfig reads the world size from torch.distributed; pretend to be rank 0 of world_size.
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: world_size)
    cfg = TrainConfig(zero_stage=stage, offload=offload, micro_batch_size=3, grad_accum=5, lr=1e-5, weight_decay=0.1)
    raw = deepspeed_config(cfg, world_size)
    parsed = ds_config.DeepSpeedConfig(json.loads(json.dumps(raw)))
    assert parsed.world_size == world_size
    assert parsed.train_batch_size == 3 * 5 * world_size
    assert parsed.train_micro_batch_size_per_gpu == 3 and parsed.gradient_accumulation_steps == 5
    assert parsed.zero_optimization_stage == stage
    assert (parsed.zero_config.offload_optimizer is not None) == (offload != "none")
    assert (parsed.zero_config.offload_param is not None) == (offload == "optimizer+param")
    assert parsed.optimizer_params["lr"] == 1e-5 and parsed.optimizer_params["weight_decay"] == 0.1


def test_inconsistent_offload_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="zero_stage=3"):
        deepspeed_config(TrainConfig(zero_stage=2, offload="optimizer+param"), 2)
    with pytest.raises(ConfigError, match="offload needs"):
        resolve_strategy(TrainConfig(distributed="ddp", offload="optimizer"), 2)


def test_training_args_save_the_json_in_the_run_dir(tmp_path: Path, tiny_model_dir, monkeypatch) -> None:
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(tiny_model_dir("tiny-deepseek-v3"))
    cfg = TrainConfig(distributed="deepspeed", zero_stage=3, offload="optimizer", micro_batch_size=2, grad_accum=4)
    kwargs = distributed_training_args(cfg, model_config, tmp_path, world_size=4)
    saved = json.loads((tmp_path / "deepspeed.json").read_text())
    assert kwargs["deepspeed"] == str(tmp_path / "deepspeed.json")
    assert saved["train_batch_size"] == 2 * 4 * 4

    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedError, match="fsdp needs CUDA"):
            distributed_training_args(TrainConfig(distributed="fsdp"), model_config, tmp_path, world_size=2)
        monkeypatch.setattr(distributed, "_cuda_available", lambda: True)
    fsdp = distributed_training_args(TrainConfig(distributed="fsdp"), model_config, tmp_path, world_size=2)
    assert fsdp["fsdp"] is True
    assert fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["DeepseekV3DecoderLayer"]
    assert json.loads((tmp_path / "fsdp.json").read_text()) == fsdp["fsdp_config"]
    monkeypatch.setattr(distributed, "_cuda_available", lambda: False)
    # DDP on CPU: gloo, and no unused-parameter search (fused experts give every parameter a gradient).
    ddp = distributed_training_args(TrainConfig(distributed="auto"), model_config, tmp_path, world_size=2)
    assert ddp == {"ddp_find_unused_parameters": False, "ddp_backend": "gloo"}


def test_fsdp_settings_are_accepted_by_training_arguments(tmp_path: Path, tiny_model_dir) -> None:
    from transformers import AutoConfig, TrainingArguments

    model_config = AutoConfig.from_pretrained(tiny_model_dir("tiny-r1-distill-qwen"))
    settings = fsdp_settings(TrainConfig(distributed="fsdp", offload="optimizer+param"), model_config)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **settings)
    assert args.fsdp_config["transformer_layer_cls_to_wrap"] == ["Qwen2DecoderLayer"]
    assert args.fsdp_config["cpu_offload"] is True


def test_moe_blocks_become_zero3_leaf_modules(tiny_model_dir) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir("tiny-deepseek-v3"))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert [c.__name__ for c in moe_block_classes(model)] == ["DeepseekV3MoE"]
    # Only under DeepSpeed ZeRO-3: DDP and ZeRO-2 leave the model alone.
    assert apply_zero3_leaf_modules(model, TrainConfig(distributed="ddp"), 2) == []
    marked = apply_zero3_leaf_modules(model, TrainConfig(distributed="deepspeed", zero_stage=3), 2)
    assert marked == ["DeepseekV3MoE"]
    from deepspeed.utils import z3_leaf_module

    assert all(z3_leaf_module(m) for m in model.modules() if type(m).__name__ == "DeepseekV3MoE")


def test_sequence_parallel_args_build_accelerates_ulysses_config() -> None:
    from types import SimpleNamespace

    from dsft.training.distributed import sequence_parallel_args

    sdpa = SimpleNamespace(model_type="qwen2", _attn_implementation="sdpa")
    cfg = TrainConfig(distributed="deepspeed", zero_stage=3, max_seq_len=4096, packing=False)
    assert sequence_parallel_args(cfg, 1, 8, sdpa) == {}
    parallelism = sequence_parallel_args(cfg, 4, 8, sdpa)["parallelism_config"]
    assert parallelism.sp_size == 4 and parallelism.sp_backend == "deepspeed" and parallelism.sp_enabled
    assert parallelism.dp_replicate_size == 2  # 8 processes / SP 4
    assert parallelism.sp_handler.sp_attn_implementation == "sdpa"
    with pytest.raises(ConfigError, match="must divide the number of processes"):
        sequence_parallel_args(cfg, 3, 8, sdpa)
    with pytest.raises(ConfigError, match="needs at least 2 processes"):
        sequence_parallel_args(cfg, 2, 1, sdpa)
    with pytest.raises(ConfigError, match="must divide train.max_seq_len"):
        sequence_parallel_args(TrainConfig(distributed="deepspeed", max_seq_len=4098, packing=False), 4, 8, sdpa)
    with pytest.raises(ConfigError, match="needs train.distributed=deepspeed"):
        sequence_parallel_args(TrainConfig(distributed="ddp", packing=False), 2, 8, sdpa)
    # sdpa under Ulysses attends causally over the whole row: packed examples would see each other.
    with pytest.raises(ConfigError, match="cannot keep packed examples apart"):
        sequence_parallel_args(TrainConfig(distributed="deepspeed"), 2, 2, sdpa)
    flash = SimpleNamespace(model_type="qwen2", _attn_implementation="flash_attention_2")
    packed = sequence_parallel_args(TrainConfig(distributed="deepspeed"), 2, 2, flash)["parallelism_config"]
    assert packed.sp_handler.sp_attn_implementation == "flash_attention_2"
    with pytest.raises(ConfigError, match="with packing needs train.micro_batch_size: 1"):
        sequence_parallel_args(TrainConfig(distributed="deepspeed", micro_batch_size=2), 2, 2, flash)
    with pytest.raises(ConfigError, match="needs sdpa or flash-attention"):
        sequence_parallel_args(cfg, 2, 2, SimpleNamespace(model_type="qwen2", _attn_implementation="eager"))
    # dsft's segment attention splits each gathered row where its position_ids restart.
    segments = SimpleNamespace(model_type="qwen2", _attn_implementation="dsft_segments")
    packed = sequence_parallel_args(TrainConfig(distributed="deepspeed"), 2, 2, segments)["parallelism_config"]
    assert packed.sp_handler.sp_attn_implementation == "dsft_segments"
    # Multi-head latent attention trains under SP (its values are padded around Ulysses: sequence_parallel_mla).
    mla = SimpleNamespace(model_type="deepseek_v3", _attn_implementation="sdpa", kv_lora_rank=512,
                          qk_head_dim=192, v_head_dim=128, num_attention_heads=128, num_key_value_heads=128)
    assert sequence_parallel_args(cfg, 2, 2, mla)["parallelism_config"].sp_size == 2
    # Ulysses gives each rank 1/sp of the heads.
    with pytest.raises(ConfigError, match=r"must divide the model's attention heads \(128\)"):
        sequence_parallel_args(TrainConfig(distributed="deepspeed", max_seq_len=3072, packing=False), 3, 3, mla)
    gqa = SimpleNamespace(model_type="qwen2", _attn_implementation="sdpa", num_attention_heads=12,
                          num_key_value_heads=3)
    with pytest.raises(ConfigError, match=r"must divide the model's key/value heads \(3\) or be a multiple"):
        sequence_parallel_args(cfg, 2, 2, gqa)
    assert sequence_parallel_args(TrainConfig(distributed="deepspeed", max_seq_len=3072, packing=False), 6, 6,
                                  gqa)["parallelism_config"].sp_size == 6


def test_sequence_parallel_json_leaves_the_batch_to_accelerate_and_one_process_is_refused(tmp_path: Path) -> None:
    from types import SimpleNamespace

    cfg = TrainConfig(distributed="deepspeed", zero_stage=2, packing=False, sequence_parallel=2, max_seq_len=64)
    assert deepspeed_config(cfg, 4)["train_batch_size"] == "auto"
    assert deepspeed_config(TrainConfig(zero_stage=2, micro_batch_size=2, grad_accum=3), 4)["train_batch_size"] == 24
    with pytest.raises(ConfigError, match="several processes"):
        distributed_training_args(TrainConfig(sequence_parallel=2), SimpleNamespace(_attn_implementation="sdpa"),
                                  tmp_path, world_size=1)


def test_sequence_parallel_with_validation_data_is_refused(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from dsft.config import DsftConfig
    from dsft.training.setup import build_training_arguments

    cfg = DsftConfig.model_validate({"model": {"name_or_path": "tiny-r1-distill-qwen"},
                                     "train": {"distributed": "deepspeed", "sequence_parallel": 2, "packing": False}})
    model = SimpleNamespace(config=SimpleNamespace(model_type="qwen2", _attn_implementation="sdpa"))
    with pytest.raises(ConfigError, match="evaluation during training is not supported"):
        build_training_arguments(cfg, tmp_path, has_eval=True, model=model)


def test_single_process_zero_and_offload_are_applied_or_said_aloud(monkeypatch) -> None:
    """One process with train.zero_stage/offload set: DeepSpeed on CUDA, a one-line notice (not silence, and no
    Python warning with a source line) elsewhere."""
    asked = TrainConfig(zero_stage=3, offload="optimizer+param")
    monkeypatch.setattr(distributed, "_cuda_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_strategy(asked, world_size=1) == "none"
    notice = unapplied_settings_notice(asked, world_size=1)
    assert notice.startswith("train.zero_stage=3, train.offload=optimizer+param: not applied; one process without "
                             "CUDA and DeepSpeed trains on a single device") and "\n" not in notice
    assert unapplied_settings_notice(TrainConfig(offload="optimizer"), world_size=1).startswith(
        "train.offload=optimizer: not applied")
    assert unapplied_settings_notice(asked, world_size=2) is None  # several processes: DDP/DeepSpeed apply them
    monkeypatch.setattr(distributed, "_cuda_available", lambda: True)
    assert resolve_strategy(asked, world_size=1) == "deepspeed"
    assert unapplied_settings_notice(asked, world_size=1, deepspeed=True) is None
    assert resolve_strategy(TrainConfig(), world_size=1) == "none"  # defaults ask for nothing
    assert unapplied_settings_notice(TrainConfig(), world_size=1) is None


def test_a_saved_config_listing_the_default_zero_stage_is_trained_as_the_first_run_was() -> None:
    """A run's config.yaml lists every key, train.zero_stage: 2 among them: trained again in one process it picks
    the strategy the first run picked, and says nothing is unapplied (compared with the defaults, not "written")."""
    saved = TrainConfig.model_validate(json.loads(TrainConfig().model_dump_json()))
    assert "zero_stage" in saved.model_fields_set
    assert resolve_strategy(saved, world_size=1, cuda=True, deepspeed=True) == "none"
    assert unapplied_settings_notice(saved, world_size=1, cuda=False, deepspeed=False) is None
    changed = TrainConfig.model_validate({**json.loads(TrainConfig().model_dump_json()), "zero_stage": 3})
    assert resolve_strategy(changed, world_size=1, cuda=True, deepspeed=True) == "deepspeed"
    assert unapplied_settings_notice(changed, world_size=1, cuda=False, deepspeed=False).startswith(
        "train.zero_stage=3: not applied")


def test_the_unapplied_settings_notice_is_one_clean_line_in_the_terminal(tmp_path: Path, tiny_model_dir) -> None:
    """`dsft train` as a user runs it: the notice is one plain line on stderr, no source path or code line."""
    tiny_model_dir("tiny-r1-distill-qwen")  # DSFT_CACHE
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"messages": 5}) + "\n")  # no record to train on: stops it after the notice
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{name_or_path: tiny-r1-distill-qwen}}\ntrain: {{zero_stage: 3}}\ndata: {{train: [{data}]}}\n")
    done = subprocess.run([sys.executable, "-m", "dsft", "train", str(config), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == ("train.zero_stage=3: not applied; one process without CUDA and DeepSpeed trains on a single "
                        "device with no ZeRO partitioning or offload (set train.distributed=deepspeed on a CUDA "
                        "machine, or remove the keys)")
    assert lines[1].startswith("error: no records left to train on")
    assert "Warning" not in done.stderr and ".py:" not in done.stderr


def test_an_optimizer_deepspeed_cannot_offload_is_refused_before_the_data_is_read(tmp_path: Path, run_cli) -> None:
    """DeepSpeed's optimizer offload runs its own CPU AdamW. The refusal came from the DeepSpeed JSON, written once
    the data was read and the model loaded (a two-process run stopped there); `dsft config show` passed it."""
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  name_or_path: tiny-deepseek-v3\ntrain:\n  distributed: deepspeed\n  zero_stage: 2\n"
                      "  offload: optimizer\n  optimizer: adafactor\n", encoding="utf-8")
    code, _, err = run_cli(["config", "show", str(config)])
    assert code == 2
    assert "train.optimizer=adafactor: DeepSpeed's optimizer offload runs its own CPU AdamW" in err
