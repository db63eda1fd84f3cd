"""Ollama export of ``hf``-template models: a Go template derived from the model's own ChatML template
renders every conversation exactly as the Jinja one does (SmolLM2's, with its default system prompt)."""

from __future__ import annotations

import pytest

from dsft.templates.ollama_derived import derived_ollama_template, jinja_renderer

from gotemplate import render_go_template

# SmolLM2-135M-Instruct's chat template, as its GGUF carries it: ChatML plus a default system prompt.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_LIKE = SMOLLM2.replace("You are a helpful AI assistant named SmolLM, trained by Hugging Face", "You are Qwen.")
PLAIN_CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CONVERSATIONS = [
    [("user", "What is 2+2?")],
    [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "写一首诗。")],
    [("user", "Hi"), ("assistant", "Hello!"), ("user", "Again"), ("assistant", "Sure.")],
    [("user", "a\n\nb  "), ("assistant", " spaced\n"), ("user", "c")],
]


@pytest.mark.parametrize("template", [SMOLLM2, QWEN_LIKE, PLAIN_CHATML], ids=["smollm2", "default-system", "chatml"])
@pytest.mark.parametrize("turns", CONVERSATIONS, ids=["single", "system-history", "ends-with-assistant", "spaces"])
def test_derived_go_template_renders_like_the_jinja_template(template: str, turns) -> None:
    render = jinja_renderer(template)
    ollama = derived_ollama_template(render, None, ["<|im_end|>"])
    systems = [content for role, content in turns if role == "system"]
    data = {"System": systems[-1] if systems else "",
            "Messages": [{"Role": role, "Content": content} for role, content in turns]}
    ends_with_assistant = turns[-1][0] == "assistant"
    expected = render(turns, not ends_with_assistant)
    if ends_with_assistant:  # Ollama leaves the last assistant message open so the model continues it
        expected = expected.removesuffix("<|im_end|>\n")
    assert render_go_template(ollama.template, data) == expected
    assert ollama.stops == ("<|im_end|>", "<|im_start|>user")


def test_modelfile_for_an_hf_template_model() -> None:
    from dsft.export.ollama import render_modelfile

    class Tok:
        chat_template, bos_token, eos_token = SMOLLM2, None, "<|im_end|>"

    modelfile = render_modelfile("hf", tokenizer=Tok())
    assert modelfile.startswith("FROM ./model.gguf\nTEMPLATE \"\"\"{{- if .System }}<|im_start|>system")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
