"""HF exports: merged checkpoint with the training chat template and R1 sampling; the adapter alone."""

from __future__ import annotations

import json

import pytest



def test_hf_export_of_v3_lora_run_via_cli(lora_run, tmp_path, run_cli) -> None:
    """`dsft export RUN --format hf`: reloadable, template equal to training's, verified with a printed diff."""
    from safetensors import safe_open
    from transformers import AutoTokenizer, GenerationConfig

    from dsft.templates import get_template

    out = tmp_path / "hf"
    code, printed = run_cli(["export", str(lora_run("tiny-deepseek-v3")), "--format", "hf", "--out", str(out),
                             "--max-shard-size", "20MB", "--tolerance", "1e-4"])
    assert code == 0, printed
    assert "max |logit diff|" in printed and "top-1 agreement 100.0%" in printed
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    with safe_open(str(shards[0]), "pt") as handle:
        assert not any("lora" in key for key in handle.keys())
    template = get_template("deepseek-r1").chat_template
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == template
    assert AutoTokenizer.from_pretrained(str(out)).chat_template == template
    generation = GenerationConfig.from_pretrained(str(out))
    assert (generation.temperature, generation.top_p, generation.do_sample) == (0.6, 0.95, True)
    meta = json.loads((out / "export.json").read_text())
    assert meta["template"] == "deepseek-r1" and meta["verification"]["max_abs_logit_diff"] <= 1e-4


def test_hf_export_bf16_aligns_special_ids(lora_run, tmp_path) -> None:
    """bfloat16 export of the Qwen2 distill: stored as bf16, exactly the merged model rounded once, BOS fixed."""
    import torch
    from safetensors import safe_open

    from dsft.export.api import export
    from dsft.export.hf import load_export_tokenizer, merge_adapter
    from dsft.export.source import load_trained_model, resolve_source
    from dsft.export.verify import compare_logits, hf_logits, verification_prompts
    from dsft.models.loading import load_model

    run = lora_run("tiny-r1-distill-qwen")
    result = export(run, "hf", tmp_path / "bf16", dtype="bfloat16")
    print(result.comparison.summary())
    # The export's own check compares with the float32 trained model, so it sees bf16's rounding of every
    # weight (8 significant bits: up to 2^-8 relative each). Measured: max |logit diff| 0.0056 on logits
    # reaching 0.89, i.e. 0.63% of the logit scale (1.6 units of 2^-8), top-1 100%, mean KL 2.5e-7 nats.
    # Bounded at 4 units (2^-6 of the largest logit) rather than an absolute 0.25, which let through
    # anything up to 28% of these logits.
    assert result.comparison.relative_diff <= 2**-6 and result.comparison.top1_agreement == 1.0
    # Rounding is the only difference allowed: the reloaded export must reproduce the float32 merged model
    # with each parameter rounded to bf16 once (same weights through the same code; measured: 0 exactly).
    source = resolve_source(run)
    prompts = verification_prompts(load_export_tokenizer(source), source.template)
    rounded = merge_adapter(load_trained_model(source))
    with torch.no_grad():
        for param in rounded.parameters():
            param.copy_(param.to(torch.bfloat16).float())
    exported = load_model(tmp_path / "bf16", dtype="float32", device="cpu")
    assert compare_logits(hf_logits(rounded, prompts), hf_logits(exported, prompts)).max_abs_diff <= 1e-5
    with safe_open(str(tmp_path / "bf16" / "model.safetensors"), "pt") as handle:
        assert {str(handle.get_tensor(key).dtype) for key in handle.keys()} == {"torch.bfloat16"}
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["bos_token_id"] == 151646  # the tokenizer's BOS, not config.json's 151643


def test_hf_verification_fails_when_the_export_is_wrong(lora_run, tmp_path, monkeypatch) -> None:
    """A merge that loses the adapter must fail verification (non-zero exit in the CLI)."""
    from dsft.errors import DsftError
    from dsft.export import hf
    from dsft.export.source import resolve_source

    monkeypatch.setattr(hf, "merge_adapter", lambda model: model.unload())
    with pytest.raises(DsftError, match="verification failed"):
        hf.export_hf(resolve_source(lora_run("tiny-deepseek-llm")), tmp_path / "bad", echo=lambda line: None)


def test_adapter_export_loads_with_peft_and_flags_vllm_limits(lora_run, tmp_path) -> None:
    from dsft.export.api import export
    from dsft.export.hf import vllm_adapter_notes

    out = tmp_path / "adapter"
    result = export(lora_run("tiny-deepseek-v3"), "adapter", out)
    assert set(result.files) == {"adapter_config.json", "adapter_model.safetensors", "export.json"}
    assert result.comparison.max_abs_diff == 0.0  # exactly the trained adapter, reloaded by peft
    config = json.loads((out / "adapter_config.json").read_text())
    assert any("target_parameters" in note for note in vllm_adapter_notes(config))
    assert vllm_adapter_notes({"r": 64}) == ["LoRA rank 64 > vLLM's default --max-lora-rank 16: pass --max-lora-rank 64"]
    assert vllm_adapter_notes({"r": 8}) == []


def test_full_run_uses_the_template_from_run_json(tiny_model_dir, tmp_path) -> None:
    """A full fine-tune run: weights from final/, the template named by run.json (never guessed)."""
    import os

    from dsft.export.api import export
    from dsft.templates import get_template

    run = tmp_path / "run"
    final = run / "final"
    final.mkdir(parents=True)
    for path in tiny_model_dir("tiny-r1-distill-qwen").iterdir():
        os.symlink(path, final / path.name)
    # The tokenizer carries R1's template; run.json says the run trained with deepseek-v3.
    (run / "run.json").write_text(json.dumps({"template": "deepseek-v3", "base_model": "tiny-r1-distill-qwen",
                                              "method": "full"}))
    result = export(run, "hf", tmp_path / "out", echo=lambda line: None)
    assert result.comparison.max_abs_diff == 0.0
    saved = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["chat_template"]
    assert saved == get_template("deepseek-v3").chat_template != get_template("deepseek-r1").chat_template
    generation = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert generation["bos_token_id"] == 151646


@pytest.mark.parametrize(("template", "noted"), [("deepseek-v3.2", True), ("deepseek-v3", False)])
def test_a_v32_export_says_vllm_needs_the_hf_tokenizer_mode(tiny_model_dir, tmp_path, template, noted) -> None:
    """vLLM renders DeepSeek-V3.2/V4 prompts with its own encoder and ignores the exported template unless
    given --tokenizer-mode hf: the export says so (printed and in export.json), as it says vLLM's LoRA limits."""
    import os

    from dsft.export.api import export

    run = tmp_path / "run"
    final = run / "final"
    final.mkdir(parents=True)
    for path in tiny_model_dir("tiny-deepseek-v3").iterdir():
        os.symlink(path, final / path.name)
    (run / "run.json").write_text(json.dumps({"template": template, "base_model": "tiny-deepseek-v3",
                                              "method": "full"}))
    printed: list[str] = []
    export(run, "hf", tmp_path / "out", echo=printed.append)
    notes = json.loads((tmp_path / "out" / "export.json").read_text())["vllm_notes"]
    assert [line for line in printed if line.startswith("note (vLLM)")] == [f"note (vLLM): {n}" for n in notes]
    assert (len(notes) == 1 and "--tokenizer-mode hf" in notes[0]) == noted and len(notes) == int(noted)
