"""The ``hf`` family supervises what the model generates: up to and including EOS, not the template's text
after it (ChatML's newline after ``<|im_end|>``). Checked against transformers' ``{% generation %}`` mask."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dsft.data.conversation import Conversation, Message
from dsft.models.tokenizers import load_deepseek_tokenizer
from dsft.templates import get_template

from template_cases import supervised_spans

# ChatML with generation markers around what the assistant writes (content + <|im_end|>), as templates
# that support transformers' return_assistant_tokens_mask mark it.
CHATML_MARKED = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}{% else %}{{ m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def chatml_tokenizer() -> Any:
    """A tokenizer whose EOS is ``<|im_end|>`` (as SmolLM2's and Qwen2.5-Instruct's are)."""
    tokenizer = copy.deepcopy(load_deepseek_tokenizer())  # the loader's tokenizer is shared: never mutate it
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML_MARKED
    return tokenizer


def _conversation() -> Conversation:
    return Conversation([Message("system", "S"), Message("user", "Hi"), Message("assistant", "Hello!"),
                         Message("user", "2+2?"), Message("assistant", "4")])


def test_newline_after_eos_is_not_supervised(chatml_tokenizer: Any) -> None:
    rendered = get_template("hf", chatml_tokenizer).render_train(_conversation(), chatml_tokenizer)
    assert supervised_spans(rendered, chatml_tokenizer) == ["Hello!<|im_end|>", "4<|im_end|>"]
    assert rendered.text == chatml_tokenizer.apply_chat_template(
        [m.to_openai() for m in _conversation().messages], tokenize=False)


def test_mask_equals_the_generation_markers(chatml_tokenizer: Any) -> None:
    messages = [{"role": m.role, "content": m.content} for m in _conversation().messages]
    marked = chatml_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                  return_assistant_tokens_mask=True)
    rendered = get_template("hf", chatml_tokenizer).render_train(_conversation(), chatml_tokenizer)
    assert rendered.input_ids == list(marked["input_ids"])
    assert [bool(m) for m in marked["assistant_masks"]] == rendered.supervised
