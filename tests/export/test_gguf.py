"""GGUF parity through llama-cpp-python: logits and tokenization of the exported file vs the trained model.

Every export here merges a random-B LoRA first, so the GGUF must carry the merged weights. float32
files must match the transformers logits tightly; float16 / q8_0 files are held to top-1 agreement
and a looser bound. deepseek2 (V3: MLA + MoE with group-limited sigmoid routing and a non-zero router
bias) is exported and checked the same way.
"""

from __future__ import annotations

import pytest

# llama-cpp-python is a test dependency (`pip install -e '.[test]'`): a missing install fails here
# instead of skipping, so the GGUF parity checks always run in CI.
import llama_cpp  # noqa: E402,F401

# (preset, dtype, bound, min top-1 agreement). float32 bounds are absolute |logit| differences; the
# rounded dtypes are bounded relative to the largest reference logit (tiny-deepseek-llm's reach 0.82 with
# this adapter: nearly uniform distributions; test_gguf_defects.py checks q8_0 on peaked ones).
CASES = [
    ("tiny-r1-distill-qwen", "float32", 1e-4, 1.0),
    ("tiny-deepseek-llm", "float32", 1e-4, 1.0),
    ("tiny-deepseek-v3", "float32", 1e-4, 1.0),
    ("tiny-r1-distill-qwen", "float16", 0.01, 0.9),
    ("tiny-deepseek-llm", "q8_0", 0.05, 0.85),
]


@pytest.fixture(scope="module")
def gguf_export(lora_run, tmp_path_factory):
    """``(preset, dtype) -> GGUFExport``, each written (and verified by export_gguf) once per module."""
    from dsft.export.gguf_export import export_gguf
    from dsft.export.source import resolve_source

    done = {}

    def get(preset: str, dtype: str):
        if (preset, dtype) not in done:
            out = tmp_path_factory.mktemp(f"gguf-{preset}-{dtype}")
            # export_gguf's own check runs with the default tolerance; the tests bound tighter below.
            done[(preset, dtype)] = export_gguf(resolve_source(lora_run(preset)), out, dtype=dtype)
        return done[(preset, dtype)]

    return get


@pytest.mark.parametrize(("preset", "dtype", "bound", "min_agreement"), CASES)
def test_gguf_logits_match_trained_model(gguf_export, preset, dtype, bound, min_agreement) -> None:
    result = gguf_export(preset, dtype)
    print(f"{preset} {dtype}: {result.comparison.summary()}")
    assert result.path.is_file()
    measured = result.comparison.max_abs_diff if dtype == "float32" else result.comparison.relative_diff
    assert measured <= bound
    assert result.comparison.top1_agreement >= min_agreement
    assert result.comparison.positions > 60
    expected_arch = {"tiny-r1-distill-qwen": "qwen2", "tiny-deepseek-llm": "llama", "tiny-deepseek-v3": "deepseek2"}
    assert result.architecture == expected_arch[preset]


@pytest.mark.parametrize("preset", ["tiny-r1-distill-qwen", "tiny-deepseek-llm", "tiny-deepseek-v3"])
def test_gguf_metadata_and_tokenization(gguf_export, lora_run, preset) -> None:
    """Tokenizer metadata as llama.cpp reads it, and identical tokenization of probes and special tokens."""
    from dsft.export.gguf_verify import load_llama, probe_texts, tokenization_mismatches
    from dsft.export.hf import load_export_tokenizer
    from dsft.export.source import resolve_source
    from dsft.templates import get_template

    result = gguf_export(preset, "float32")
    source = resolve_source(lora_run(preset))
    tokenizer = load_export_tokenizer(source)
    llm = load_llama(result.path, vocab_only=True)
    try:
        meta = llm.metadata
        texts = probe_texts(source.template, tokenizer) + [
            "<think>\n推理</think>\n\n答案42", tokenizer.bos_token + tokenizer.eos_token]
        mismatches = tokenization_mismatches(llm, tokenizer, texts)
        n_vocab = llm.n_vocab()
    finally:
        llm.close()
    assert mismatches == []
    assert meta["tokenizer.chat_template"] == get_template(source.template).chat_template
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert int(meta["tokenizer.ggml.bos_token_id"]) == tokenizer.bos_token_id
    assert int(meta["tokenizer.ggml.eos_token_id"]) == tokenizer.eos_token_id
    assert meta["tokenizer.ggml.add_bos_token"] == "true"
    expected_pre = {"tiny-r1-distill-qwen": "deepseek-r1-qwen", "tiny-deepseek-v3": "deepseek-v3",
                    # the DeepSeek-LLM stand-in tokenizer is V3's BPE (see dsft.models.tokenizers)
                    "tiny-deepseek-llm": "deepseek-v3"}
    assert meta["tokenizer.ggml.pre"] == expected_pre[preset]
    assert n_vocab == int(meta[f"{result.architecture}.vocab_size"])


def test_gguf_verification_catches_a_wrong_rope_layout(lora_run, tmp_path, monkeypatch) -> None:
    """Without llama.cpp's q/k row permutation the Llama export is wrong, and verification must say so."""
    from dsft.errors import DsftError
    from dsft.export import gguf_arch
    from dsft.export.gguf_export import export_gguf
    from dsft.export.source import resolve_source

    monkeypatch.setattr(gguf_arch, "_permute_for_llama_rope", lambda weight, n_head: weight)
    with pytest.raises(DsftError, match="verification failed"):
        export_gguf(resolve_source(lora_run("tiny-deepseek-llm")), tmp_path, dtype="float32")


def test_gguf_llama3_rope_scaling(tiny_model_dir, tmp_path) -> None:
    """R1-Distill-Llama uses Llama-3 rope scaling: written as rope_freqs, reproduced by llama.cpp."""
    import json
    import os

    from dsft.export.gguf_export import export_gguf
    from dsft.export.source import resolve_source

    preset = tiny_model_dir("tiny-deepseek-llm")
    model = tmp_path / "llama3-rope"
    model.mkdir()
    for path in preset.iterdir():
        if path.suffix == ".json":
            (model / path.name).write_bytes(path.read_bytes())
        else:
            os.symlink(path, model / path.name)  # weights unchanged; only the rope config differs
    config = json.loads((model / "config.json").read_text())
    # Theta 1e4 with head_dim 16 puts the lowest frequencies beyond the low-frequency wavelength,
    # so the scaling changes logits even at the short positions of the verification prompts.
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 64}
    (model / "config.json").write_text(json.dumps(config))
    result = export_gguf(resolve_source(model), tmp_path / "out", dtype="float32", tolerance=1e-4)
    print(f"llama3 rope: {result.comparison.summary()}")
    assert result.comparison.max_abs_diff <= 1e-4
