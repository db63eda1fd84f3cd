"""``dsft data prepare`` with the model's own chat template (``template.name: hf``) says how many train records have
reasoning that the template leaves out of the text it renders, found by rendering them: many HF templates drop
``reasoning_content`` (and cut ``<think>`` out of the content), so a run would train on the answers alone. Before,
the preparation said nothing and the report counted the records "with reasoning" as if it would be trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# ChatML writing each message's content only, as most models' templates do: the reasoning goes.
DROPS = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# The same, writing an assistant turn's reasoning_content in a think block before its content.
KEEPS = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}{% if m.get('reasoning_content') %}"
         "{{ '<think>' + m['reasoning_content'] + '</think>' }}{% endif %}{{ m['content'] + '<|im_end|>\\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _model_with_template(tiny_model_dir, tmp: Path, chat_template: str) -> Path:
    """A copy of a tiny model whose tokenizer carries ``chat_template`` (no DeepSeek family's: detected as hf)."""
    model = tmp / "model"
    shutil.copytree(tiny_model_dir("tiny-deepseek-llm"), model)
    config_file = model / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = chat_template
    config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    (model / "chat_template.jinja").unlink(missing_ok=True)  # transformers prefers the file to the key
    return model


def _records(tmp: Path) -> Path:
    """7 records: 3 with reasoning_content, 2 with a <think> block in the content, 2 without reasoning."""
    rows = [{"messages": [{"role": "user", "content": f"{i}+{i}?"},
                          {"role": "assistant", "content": str(2 * i), "reasoning_content": f"{i} and {i} is {2 * i}."}]}
            for i in range(3)]
    rows += [{"messages": [{"role": "user", "content": f"hi {i}"},
                           {"role": "assistant", "content": f"<think>a greeting, number {i}</think>hello {i}"}]}
             for i in range(2)]
    rows += [{"messages": [{"role": "user", "content": f"name {i}"}, {"role": "assistant", "content": f"n{i}"}]}
             for i in range(2)]
    path = tmp / "r.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _prepare(run_cli, tmp: Path, model: Path, *settings: str) -> str:
    code, _, err = run_cli(["data", "prepare", str(_records(tmp)), "--out", str(tmp / "out"), "--set",
                            f"model.name_or_path={model}", "--set", "data.val_ratio=0", *sum((["--set", s]
                                                                                             for s in settings), [])])
    assert code == 0, err
    return " ".join(err.split())


@pytest.mark.parametrize("name", ["hf", "auto"])
def test_records_whose_reasoning_the_template_drops_are_counted_once(tiny_model_dir, run_cli, tmp_path: Path,
                                                                      name: str) -> None:
    err = _prepare(run_cli, tmp_path, _model_with_template(tiny_model_dir, tmp_path, DROPS), f"template.name={name}")
    assert err.count("warning:") == 1, err
    assert ("warning: 5 of 7 train record(s) have reasoning that the hf template (the tokenizer's own chat_template) "
            "leaves out of the text it renders (first: ") in err, err
    assert "Set data.reasoning=drop to train without reasoning on purpose" in err


def test_a_template_that_writes_the_reasoning_and_reasoning_dropped_on_purpose_say_nothing(
        tiny_model_dir, run_cli, tmp_path: Path) -> None:
    keeps = _model_with_template(tiny_model_dir, tmp_path / "k", KEEPS)
    assert "warning" not in _prepare(run_cli, tmp_path / "k", keeps, "template.name=hf")
    drops = _model_with_template(tiny_model_dir, tmp_path / "d", DROPS)
    assert "warning" not in _prepare(run_cli, tmp_path / "d", drops, "template.name=hf", "data.reasoning=drop")
