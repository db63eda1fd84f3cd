"""DeepSeek V3/R1 FP8 checkpoints -> BF16, one shard at a time.

The released V3/R1 weights store most matrices as ``float8_e4m3fn`` with one fp32 scale per 128 x 128
block in a sibling tensor ``<name>_scale_inv`` (shape ceil(rows/128) x ceil(cols/128)); the real value
is ``fp8.float() * scale_inv`` broadcast over its block, edge blocks included. They also hold the
multi-token-prediction layer(s) ``model.layers.{num_hidden_layers + i}.*``, which transformers' model
classes do not have. Standard LoRA and full fine-tuning need plain BF16 weights without them.

Memory stays bounded by one input shard (about 4-5 GB for the released files) plus the scales it
needs: each output shard is written before the next input shard is opened. A scale stored in another
shard is read lazily from that file (safetensors memory-maps, so only that tensor is read).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.errors import DsftError

SCALE_SUFFIX = "_scale_inv"
INDEX_FILE = "model.safetensors.index.json"
# Everything that is not weights and that a model directory needs: tokenizer, chat template, code.
_COPIED_SUFFIXES = (".json", ".model", ".txt", ".jinja", ".py", ".md", ".tiktoken")
_NOT_COPIED = (INDEX_FILE, "config.json")


@dataclass
class ConversionReport:
    """What a conversion did, for the CLI summary and tests."""

    shards_written: list[str] = field(default_factory=list)
    dequantized: int = 0
    copied: int = 0
    skipped_mtp: int = 0
    dropped_scales: int = 0
    total_bytes: int = 0


def dequantize_block_fp8(weight: Any, scale_inv: Any, block: tuple[int, int] = (128, 128)) -> Any:
    """``weight`` (float8_e4m3fn [R, C]) times its per-block ``scale_inv`` ([ceil(R/br), ceil(C/bc)]) -> bf16."""
    import torch

    rows, cols = weight.shape
    br, bc = block
    expected = (-(-rows // br), -(-cols // bc))
    if tuple(scale_inv.shape) != expected:
        raise DsftError(f"scale shape {tuple(scale_inv.shape)} does not match weight {tuple(weight.shape)} "
                        f"in {br}x{bc} blocks (expected {expected})")
    scale = scale_inv.float().repeat_interleave(br, dim=0)[:rows].repeat_interleave(bc, dim=1)[:, :cols]
    return (weight.float() * scale).to(torch.bfloat16)


def _weight_map(src: Path) -> dict[str, str]:
    index = src / INDEX_FILE
    if index.is_file():
        return json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    single = src / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as handle:
            return {name: single.name for name in handle.keys()}
    raise DsftError(f"{src}: no {INDEX_FILE} or model.safetensors (is this a Hugging Face checkpoint directory?)")


def _is_mtp(name: str, num_layers: int) -> bool:
    """Multi-token-prediction tensors live in layers numbered num_hidden_layers and above."""
    parts = name.split(".")
    return len(parts) > 2 and parts[0] == "model" and parts[1] == "layers" and int(parts[2]) >= num_layers


def _read_config(src: Path) -> tuple[dict[str, Any], tuple[int, int]]:
    path = src / "config.json"
    if not path.is_file():
        raise DsftError(f"{src}: no config.json")
    config = json.loads(path.read_text(encoding="utf-8"))
    if "num_hidden_layers" not in config:
        raise DsftError(f"{path}: no num_hidden_layers (needed to find the MTP layer)")
    quant = config.get("quantization_config") or {}
    if quant.get("quant_method") != "fp8":
        raise DsftError(f"{path}: not an FP8 checkpoint (quantization_config.quant_method is "
                        f"{quant.get('quant_method')!r}, not 'fp8'); there is nothing to dequantise")
    block = tuple(quant.get("weight_block_size", (128, 128)))
    return config, (int(block[0]), int(block[1]))


def _convert_shard(src: Path, shard: str, names: list[str], weight_map: dict[str, str],
                   block: tuple[int, int], report: ConversionReport) -> dict[str, Any]:
    """Load one input shard's kept tensors and return them in BF16 (or their own dtype when not FP8)."""
    import torch
    from safetensors import safe_open

    out: dict[str, Any] = {}
    with safe_open(str(src / shard), framework="pt") as handle:
        for name in names:
            tensor = handle.get_tensor(name)
            if tensor.dtype != torch.float8_e4m3fn:
                out[name] = tensor
                report.copied += 1
                continue
            scale_name = name + SCALE_SUFFIX
            if scale_name not in weight_map:
                raise DsftError(f"{src / shard}: FP8 tensor {name} has no {scale_name}")
            if weight_map[scale_name] == shard:
                scale = handle.get_tensor(scale_name)
            else:
                with safe_open(str(src / weight_map[scale_name]), framework="pt") as other:
                    scale = other.get_tensor(scale_name)
            out[name] = dequantize_block_fp8(tensor, scale, block)
            report.dequantized += 1
    return out


def _copy_side_files(src: Path, dst: Path, config: dict[str, Any]) -> None:
    config = {k: v for k, v in config.items() if k != "quantization_config"}
    config["torch_dtype"] = "bfloat16"
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for path in src.iterdir():
        if path.is_file() and path.suffix in _COPIED_SUFFIXES and path.name not in _NOT_COPIED:
            shutil.copy2(path, dst / path.name)


def convert_fp8_to_bf16(src: str | Path, dst: str | Path) -> ConversionReport:
    """Dequantise an FP8 block-scaled checkpoint in ``src`` into a BF16 checkpoint in ``dst``.

    Drops every ``*_scale_inv`` tensor and the MTP layer(s), keeps shard boundaries, writes a new
    ``model.safetensors.index.json``, and copies config (without ``quantization_config``) and
    tokenizer files.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DsftError(f"{src}: not a directory")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        # A checkpoint directory is loaded whole: the tokenizer and config copied in would replace the user's
        # files, and a stale shard beside the new ones would be read with them (README, "Output directories").
        held = "is not a directory" if not dst.is_dir() else (
            "already holds safetensors files" if any(dst.glob("*.safetensors")) else "is not empty")
        raise DsftError(f"{dst}: {held}; choose a new or empty output directory")
    config, block = _read_config(src)
    num_layers = int(config["num_hidden_layers"])
    weight_map = _weight_map(src)
    from safetensors.torch import save_file  # torch: once the source is known to be a checkpoint

    dst.mkdir(parents=True, exist_ok=True)
    report = ConversionReport()
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        if name.endswith(SCALE_SUFFIX):
            report.dropped_scales += 1
        elif _is_mtp(name, num_layers):
            report.skipped_mtp += 1
        else:
            by_shard.setdefault(shard, []).append(name)
    new_map: dict[str, str] = {}
    for shard in sorted(by_shard):
        tensors = _convert_shard(src, shard, by_shard[shard], weight_map, block, report)
        save_file(tensors, str(dst / shard), metadata={"format": "pt"})
        report.total_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
        new_map.update({name: shard for name in tensors})
        report.shards_written.append(shard)
        del tensors  # release this shard before the next one is read
    index = {"metadata": {"total_size": report.total_bytes}, "weight_map": dict(sorted(new_map.items()))}
    (dst / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    _copy_side_files(src, dst, config)
    return report
