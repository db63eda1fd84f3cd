"""``lora.targets`` of a GGUF source is checked before the conversion and the data: the skeleton read from the
GGUF header has the modules of the converted checkpoint."""

from __future__ import annotations

from pathlib import Path

from dsft.models.lora import discover_lora_targets, linear_module_names
from dsft.models.skeleton import model_skeleton

def test_gguf_header_skeleton_has_the_converted_models_modules(smollm2, smollm2_gguf: Path, tmp_path: Path) -> None:
    model, _ = smollm2
    skeleton = model_skeleton(smollm2_gguf, cache_dir=tmp_path / "cache")  # not converted there: from the header
    assert not (tmp_path / "cache").exists()
    assert linear_module_names(skeleton) == linear_module_names(model)
    assert discover_lora_targets(skeleton) == discover_lora_targets(model)

def test_train_from_an_ollama_name_refuses_a_mistyped_target_first(smollm2_dir, facts, run_cli,
                                                                   tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    run = tmp_path / "run"
    code, out, err = run_cli(["train", str(config), "--out", str(run), "--set", "model.name_or_path=ollama:smollm2:135m",
                              "--set", f"data.train=[{facts['train']}]", "--set", "lora.targets=[q_proj, v_porj]"])
    assert code == 2, out + err
    assert "lora.targets: 'v_porj' matches no adaptable Linear" in err and "LlamaForCausalLM" in err
    assert not run.exists()
