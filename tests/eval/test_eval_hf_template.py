"""``dsft eval`` / ``dsft compare`` on models whose template is their own (``hf``): the template gets its tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dsft.data.conversation import Conversation, Message
from dsft.eval.evaluate import generation_eval
from dsft.eval.target import load_eval_target

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _chatml_model(tiny_model_dir, root: Path) -> Path:
    """A tiny Llama whose tokenizer carries a ChatML template (detected as ``hf``, like SmolLM2's)."""
    model = root / "chatml-model"
    shutil.copytree(tiny_model_dir("tiny-deepseek-llm"), model)
    config_file = model / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = CHATML
    config_file.write_text(json.dumps(config), encoding="utf-8")
    (model / "chat_template.jinja").unlink(missing_ok=True)
    return model


def test_hf_template_models_and_runs_render_prompts(tiny_model_dir, tmp_path: Path) -> None:
    model = _chatml_model(tiny_model_dir, tmp_path)
    conv = Conversation([Message("user", "Hi"), Message("assistant", "Hello")])
    target = load_eval_target(model)
    assert target.template_name == "hf"
    assert target.render_prompt(Conversation([Message("user", "Hi")])) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    # A full fine-tune's run directory whose run.json names the hf template.
    run = tmp_path / "run"
    shutil.copytree(model, run / "final")
    (run / "run.json").write_text(json.dumps({"template": "hf", "method": "full", "base_model": str(model),
                                              "final": "final"}))
    run_target = load_eval_target(run)
    assert run_target.render_prompt(Conversation([Message("user", "Hi")])).endswith("<|im_start|>assistant\n")
    metrics, samples = generation_eval(target.model, target.tokenizer, "hf", [conv], max_new_tokens=2)
    assert metrics["count"] == 1 and samples[0]["question"]
