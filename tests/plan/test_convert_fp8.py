"""`dsft convert fp8-to-bf16` on a synthetic FP8 DeepSeek-V3 checkpoint.

The checkpoint is a tiny DeepseekV3 whose matrices are quantised to float8_e4m3fn with one scale per
128 x 128 block (shapes chosen so edge blocks are partial), split over two shards with a scale stored
in a different shard from its weight, plus an MTP layer (index num_hidden_layers). The reference
dequantisation below loops over blocks, independently of the converter's broadcast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dsft.errors import DsftError
from dsft.models.convert_fp8 import convert_fp8_to_bf16

BLOCK = 128
LAYERS = 2


def _quantise(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = weight.shape
    scale = torch.empty(-(-rows // BLOCK), -(-cols // BLOCK))
    fp8 = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            block = weight[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            scale[i, j] = block.abs().max().clamp(min=1e-12) / 448.0
            fp8[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = (block / scale[i, j]).to(torch.float8_e4m3fn)
    return fp8, scale


def _reference(fp8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    out = torch.empty(fp8.shape, dtype=torch.float32)
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            rows, cols = slice(i * BLOCK, (i + 1) * BLOCK), slice(j * BLOCK, (j + 1) * BLOCK)
            out[rows, cols] = fp8[rows, cols].float() * scale[i, j]
    return out.to(torch.bfloat16)


@pytest.fixture()
def fp8_checkpoint(tmp_path: Path) -> Path:
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    config = DeepseekV3Config(vocab_size=300, hidden_size=200, intermediate_size=260, moe_intermediate_size=72,
                              num_hidden_layers=LAYERS, first_k_dense_replace=1, num_attention_heads=2,
                              num_key_value_heads=2, q_lora_rank=136, kv_lora_rank=64, qk_nope_head_dim=32,
                              qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=4, num_experts_per_tok=2,
                              n_group=2, topk_group=1, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(config).to(torch.bfloat16)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    # The release stores routed experts per expert as 2-D Linear weights; quantise every 2-D
    # projection (not norms, embeddings, the router or lm_head, as in the release).
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if value.dim() == 2 and "proj" in name:
            fp8, scale = _quantise(value.float())
            tensors[name], tensors[name + "_scale_inv"] = fp8, scale
        else:
            tensors[name] = value
    mtp = f"model.layers.{LAYERS}"
    tensors[f"{mtp}.eh_proj.weight"], tensors[f"{mtp}.eh_proj.weight_scale_inv"] = _quantise(torch.randn(200, 400))
    tensors[f"{mtp}.enorm.weight"] = torch.ones(200, dtype=torch.bfloat16)
    src = tmp_path / "fp8"
    src.mkdir()
    names = sorted(tensors)
    moved_scale = next(n for n in names if n.endswith("q_a_proj.weight_scale_inv"))
    first = [n for n in names[: len(names) // 2] if n != moved_scale]
    second = [n for n in names if n not in first]
    if moved_scale.replace("_scale_inv", "") in second:  # keep the weight away from its scale
        second.remove(moved_scale.replace("_scale_inv", ""))
        first.append(moved_scale.replace("_scale_inv", ""))
    shards = {"model-00001-of-00002.safetensors": first, "model-00002-of-00002.safetensors": second}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(src / shard))
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    raw = config.to_dict()
    raw["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [BLOCK, BLOCK]}
    (src / "config.json").write_text(json.dumps(raw))
    (src / "tokenizer_config.json").write_text("{}")
    torch.save(tensors, tmp_path / "reference.pt")
    return src


def test_dequantises_against_block_reference_and_skips_mtp(fp8_checkpoint: Path, tmp_path: Path, run_cli) -> None:
    dst = tmp_path / "bf16"
    assert run_cli(["convert", "fp8-to-bf16", str(fp8_checkpoint), str(dst)])[0] == 0
    by_flag = tmp_path / "by-flag"  # --out, as every other command that writes a directory names it
    assert run_cli(["convert", "fp8-to-bf16", str(fp8_checkpoint), "--out", str(by_flag)])[0] == 0
    assert sorted(p.name for p in by_flag.iterdir()) == sorted(p.name for p in dst.iterdir())
    source = torch.load(tmp_path / "reference.pt")
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    converted: dict[str, torch.Tensor] = {}
    for shard in set(index["weight_map"].values()):
        with safe_open(str(dst / shard), framework="pt") as handle:
            for name in handle.keys():
                assert index["weight_map"][name] == shard
                converted[name] = handle.get_tensor(name)
    assert set(converted) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in converted.values())
    assert not any(name.endswith("_scale_inv") for name in converted)
    assert not any(name.startswith(f"model.layers.{LAYERS}.") for name in converted)
    dequantised = 0
    for name, value in source.items():
        if name.endswith("_scale_inv") or name.startswith(f"model.layers.{LAYERS}."):
            continue
        if value.dtype == torch.float8_e4m3fn:
            expected = _reference(value, source[name + "_scale_inv"])
            assert converted[name].dtype == torch.bfloat16
            assert torch.equal(converted[name], expected), name
            dequantised += 1
        else:
            assert torch.equal(converted[name], value), name
    assert dequantised > 10
    config = json.loads((dst / "config.json").read_text())
    assert "quantization_config" not in config and (dst / "tokenizer_config.json").is_file()


def test_converted_checkpoint_loads_in_transformers(fp8_checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    dst = tmp_path / "bf16"
    report = convert_fp8_to_bf16(fp8_checkpoint, dst)
    assert report.skipped_mtp == 2 and len(report.shards_written) == 2  # eh_proj + enorm (its scale counts as a scale)
    model = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.bfloat16)
    source = torch.load(tmp_path / "reference.pt")
    name = "model.layers.1.self_attn.q_a_proj.weight"
    expected = _reference(source[name], source[name + "_scale_inv"])
    assert torch.equal(model.state_dict()[name], expected)


def test_refuses_non_empty_destination_and_missing_scales(fp8_checkpoint: Path, tmp_path: Path) -> None:
    dst = tmp_path / "bf16"
    convert_fp8_to_bf16(fp8_checkpoint, dst)
    with pytest.raises(DsftError, match="already holds"):
        convert_fp8_to_bf16(fp8_checkpoint, dst)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "tokenizer.json").write_text("my own tokenizer\n")  # the conversion would copy the source's over it
    with pytest.raises(DsftError, match="is not empty; choose a new or empty output directory"):
        convert_fp8_to_bf16(fp8_checkpoint, mine)
    assert [p.name for p in mine.iterdir()] == ["tokenizer.json"]
    assert (mine / "tokenizer.json").read_text() == "my own tokenizer\n"
    index_path = fp8_checkpoint / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    dropped = next(n for n in index["weight_map"] if n.endswith("o_proj.weight_scale_inv"))
    del index["weight_map"][dropped]
    index_path.write_text(json.dumps(index))
    with pytest.raises(DsftError, match="has no"):
        convert_fp8_to_bf16(fp8_checkpoint, tmp_path / "again")
