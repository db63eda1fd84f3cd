"""The renderers with the tokenizers the tiny presets ship (R1 ids, R1-Distill-Qwen ids, DeepSeek-LLM ids):
ids are looked up, never assumed, and the tokenizers' own BOS-adding post-processor never doubles BOS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsft.data.conversation import Conversation, Message
from dsft.errors import UnsupportedError
from dsft.models import tokenizers as tk
from dsft.templates import detect_template, get_template

from template_cases import supervised_spans

EOS = "<｜end▁of▁sentence｜>"
PRESET_TOKENIZERS = {
    "r1": (tk.r1_tokenizer_files, "deepseek-r1"),
    "r1-distill-qwen": (tk.r1_distill_qwen_tokenizer_files, "deepseek-r1"),
    "deepseek-llm": (tk.deepseek_llm_tokenizer_files, "deepseek-llm"),
}


@pytest.fixture(scope="module", params=sorted(PRESET_TOKENIZERS))
def preset(request: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, Path]:
    from transformers import AutoTokenizer

    build, family = PRESET_TOKENIZERS[request.param]
    try:
        files = build()
    except UnsupportedError as exc:  # the Qwen2 vocabulary comes from an optional package
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp(request.param)
    tk.write_tokenizer_files(*files, out)
    return AutoTokenizer.from_pretrained(str(out)), family, out


def test_render_with_the_preset_tokenizer(preset: tuple[Any, str, Path]) -> None:
    tokenizer, family, directory = preset
    assert detect_template(directory) == family
    assert tokenizer("x").input_ids[0] == tokenizer.bos_token_id  # this tokenizer adds BOS itself...
    conv = Conversation([Message("user", "Hi"), Message("assistant", "Hello!", reasoning="Greeting.")])
    rendered = get_template(family).render_train(conv, tokenizer)
    assert rendered.input_ids.count(tokenizer.bos_token_id) == 1  # ...but not here
    expected = {"deepseek-r1": f"Greeting.\n</think>\n\nHello!{EOS}",
                "deepseek-llm": f" <think>\nGreeting.\n</think>\n\nHello!{EOS}"}[family]
    assert supervised_spans(rendered, tokenizer) == [expected]
    if family == "deepseek-r1":
        think = tokenizer.convert_tokens_to_ids("<think>")
        assert rendered.input_ids[rendered.supervised.index(True) - 2] == think
    # The released template in the preset agrees with the family's prompt.
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == get_template(family).render_prompt(Conversation(conv.messages[:1]))
