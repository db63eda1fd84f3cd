"""Ollama packaging: Modelfile TEMPLATE / stops / sampling per family, and the end-to-end export directory."""

from __future__ import annotations

import json

import pytest

from dsft.errors import UnsupportedError
from dsft.export.ollama import create_command, ollama_model_name, render_modelfile, sampling_parameters

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


def test_r1_modelfile_opens_the_think_block_and_stops_on_specials() -> None:
    text = render_modelfile("deepseek-r1", sampling=sampling_parameters("deepseek-r1", None))
    lines = text.splitlines()
    assert lines[0] == "FROM ./model.gguf"
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    # The generation prompt is the one training used: <｜Assistant｜><think> + newline.
    assert '{{- if and $last (ne .Role "assistant") }}<｜Assistant｜><think>{{ "\\n" }}{{- end }}' in template
    assert "<｜User｜>{{ .Content }}" in template
    assert f"{{{{- if not $last }}}}{EOS}{{{{- end }}}}" in template
    assert BOS not in template  # llama.cpp adds BOS itself (add_bos_token)
    for stop in (BOS, EOS, "<｜User｜>", "<｜Assistant｜>"):
        assert f'PARAMETER stop "{stop}"' in lines
    assert "PARAMETER temperature 0.6" in lines and "PARAMETER top_p 0.95" in lines


def test_other_families() -> None:
    v3 = render_modelfile("deepseek-v3")
    assert "<think>" not in v3 and '(ne .Role "assistant") }}<｜Assistant｜>{{- end }}' in v3
    v31 = render_modelfile("deepseek-v3.1")
    assert "<｜Assistant｜></think>{{ .Content }}" in v31
    llm = render_modelfile("deepseek-llm")
    assert 'User: {{ .Content }}{{ "\\n\\n" }}' in llm and "Assistant:{{- end }}" in llm
    assert 'PARAMETER stop "User:"' in llm
    with pytest.raises(UnsupportedError, match="no Ollama template"):
        render_modelfile("hf")


def test_sampling_from_generation_config_for_non_r1(tmp_path) -> None:
    path = tmp_path / "generation_config.json"
    path.write_text('{"temperature": 0.3, "top_p": 0.9, "do_sample": true}')
    assert sampling_parameters("deepseek-v3", path) == {"temperature": 0.3, "top_p": 0.9}
    assert sampling_parameters("deepseek-v3", tmp_path / "missing.json") == {}


def test_names_and_command() -> None:
    assert ollama_model_name("My Run_01 (R1)") == "my-run_01-r1"
    assert create_command("r1-lora") == "ollama create r1-lora -f Modelfile"


def test_ollama_export_directory(lora_run, tmp_path, capsys) -> None:
    from dsft.export.api import export

    out = tmp_path / "ollama"
    result = export(lora_run("tiny-r1-distill-qwen"), "ollama", out, dtype="q8_0", name="tiny-r1")
    assert {"model.gguf", "Modelfile", "README.md", "export.json"} <= set(result.files)
    assert result.comparison is not None and result.comparison.relative_diff < 0.05
    assert (out / "Modelfile").read_text().startswith("FROM ./model.gguf\n")
    assert "ollama create tiny-r1 -f Modelfile" in (out / "README.md").read_text()
    assert "ollama create tiny-r1 -f Modelfile" in capsys.readouterr().out
    record = json.loads((out / "export.json").read_text())  # what the dashboard shows of it
    assert record["format"] == "ollama" and record["verification"]["top1_agreement"] > 0.9
    assert record["ollama"] == {"name": "tiny-r1", "modelfile": "Modelfile", "create": "ollama create tiny-r1 -f Modelfile"}


CONVERSATIONS = [
    [("user", "What is 2+2?")],
    [("system", "You are a helpful assistant."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "写一首诗。")],
    [("user", "Hi"), ("assistant", "Hello!"), ("user", "Again"), ("assistant", "Sure.")],
]


@pytest.mark.parametrize("family", ["deepseek-r1", "deepseek-v3", "deepseek-v3.1", "deepseek-llm", "deepseek-v4",
                                    "deepseek-v3.2"])
@pytest.mark.parametrize("turns", CONVERSATIONS, ids=["single", "system-history", "ends-with-assistant"])
def test_modelfile_template_renders_like_the_training_template(family, turns) -> None:
    """The Go TEMPLATE (run by a small interpreter of Go's template subset) == the Python prompt minus BOS."""
    from dsft.data.conversation import Conversation, Message
    from dsft.templates import get_template
    from gotemplate import render_go_template

    conv = Conversation([Message(role, content) for role, content in turns])
    systems = [content for role, content in turns if role == "system"]
    data = {"System": systems[-1] if systems else "",
            "Messages": [{"Role": role, "Content": content} for role, content in turns]}
    rendered = render_go_template(get_template(family).ollama_template().template, data)
    ends_with_assistant = turns[-1][0] == "assistant"
    expected = get_template(family).render_prompt(conv, add_generation_prompt=not ends_with_assistant)
    if ends_with_assistant:
        # Ollama leaves the last assistant message open (no EOS) so the model continues it.
        expected = expected.removesuffix(EOS)
    assert expected.startswith(BOS)
    assert rendered == expected[len(BOS):]


def test_ollama_export_without_a_verifier_writes_nothing_and_reruns(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """A missing llama-cpp-python is refused before conversion, so no model.gguf blocks the rerun."""
    import sys

    from dsft.export.api import export

    model = tiny_model_dir("tiny-r1-distill-qwen")
    out = tmp_path / "ollama"
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(UnsupportedError, match="llama-cpp-python"):
        export(str(model), "ollama", out, echo=lambda line: None)
    assert not (out / "model.gguf").exists()
    result = export(str(model), "ollama", out, verify=False, echo=lambda line: None)  # no --overwrite needed
    assert {"model.gguf", "Modelfile"} <= set(result.files)


def test_failed_conversion_removes_its_partial_files(tiny_model_dir, tmp_path, monkeypatch) -> None:
    from dsft.export import gguf_export
    from dsft.export.api import export

    def crash(merged, tokenizer, tokenizer_dir, path, *args, **kwargs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"GGUF partial")
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(gguf_export, "write_gguf", crash)
    with pytest.raises(RuntimeError):
        export(str(tiny_model_dir("tiny-r1-distill-qwen")), "gguf", tmp_path / "out", verify=False,
               echo=lambda line: None)
    assert not (tmp_path / "out").exists()
