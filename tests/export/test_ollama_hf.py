"""Ollama export of ``hf``-template models: a Go template derived from the model's own ChatML template
renders every conversation exactly as the Jinja one does (SmolLM2's, with its default system prompt)."""

from __future__ import annotations

import pytest

from dsft.templates import get_template
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


class _ChatMLTokenizer:
    """SmolLM2's tokenizer as the Modelfile sees it: bos_token is ChatML's own <|im_start|> (id 1), which encoding
    adds or not as ``adds_bos`` says."""

    chat_template, bos_token, bos_token_id, eos_token, eos_token_id = SMOLLM2, "<|im_start|>", 1, "<|im_end|>", 2

    def __init__(self, adds_bos: bool) -> None:
        self.adds_bos = adds_bos

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens and self.adds_bos else []) + [ord(c) for c in text]


@pytest.mark.parametrize("turns", CONVERSATIONS, ids=["single", "system-history", "ends-with-assistant", "spaces"])
def test_a_bos_the_tokenizer_does_not_add_stays_in_the_go_template(turns) -> None:
    """SmolLM2's bos_token is <|im_start|>, which its template writes at the head of the system turn and its
    tokenizer does not add (the GGUF says add_bos_token false): the Modelfile left that first <|im_start|> out,
    so Ollama prompted the fine-tuned model with 'system\\nYou are ...' and not the prompt it was trained on."""
    ollama = get_template("hf", _ChatMLTokenizer(adds_bos=False)).ollama_template()
    systems = [content for role, content in turns if role == "system"]
    data = {"System": systems[-1] if systems else "",
            "Messages": [{"Role": role, "Content": content} for role, content in turns]}
    ends_with_assistant = turns[-1][0] == "assistant"
    expected = jinja_renderer(SMOLLM2)(turns, not ends_with_assistant)
    if ends_with_assistant:
        expected = expected.removesuffix("<|im_end|>\n")
    assert render_go_template(ollama.template, data) == expected  # was missing its first '<|im_start|>'
    # A tokenizer that adds the BOS itself (llama.cpp then adds it too): the template leaves that one out.
    adding = get_template("hf", _ChatMLTokenizer(adds_bos=True)).ollama_template()
    assert "<|im_start|>" + render_go_template(adding.template, data) == expected

