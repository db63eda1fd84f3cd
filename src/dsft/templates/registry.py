"""Template families by name, and detection of a model's family from its files.

>>> get_template("deepseek-r1").render_prompt(Conversation([Message("user", "Hi")]))
'<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\\n'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsft.data.conversation import Conversation, Message  # noqa: F401  (used in the doctest)
from dsft.errors import DsftError
from dsft.templates.chat_template import ChatTemplate
from dsft.templates.deepseek_llm import LLM_SPECIAL_TOKENS, render_deepseek_llm
from dsft.templates.deepseek_v3 import R1_SPECIAL_TOKENS, V3_SPECIAL_TOKENS, render_deepseek_r1, render_deepseek_v3
from dsft.templates.deepseek_v31 import V31_SPECIAL_TOKENS, render_deepseek_v31
from dsft.templates.deepseek_v4 import V4_SPECIAL_TOKENS, render_deepseek_v4

if TYPE_CHECKING:
    from dsft.templates.hf import HFChatTemplate

_FAMILIES: dict[str, ChatTemplate] = {
    t.name: t
    for t in (
        ChatTemplate("deepseek-llm", render_deepseek_llm, LLM_SPECIAL_TOKENS, roles=("system", "user", "assistant"),
                     description="DeepSeek-LLM 7B/67B chat, MoE-16B chat, V2(-Lite) chat: 'User: …' / 'Assistant: …'"),
        ChatTemplate("deepseek-v3", render_deepseek_v3, V3_SPECIAL_TOKENS,
                     description="DeepSeek-V2.5, V3, V3-0324: <｜User｜>/<｜Assistant｜>, no thinking"),
        ChatTemplate("deepseek-r1", render_deepseek_r1, R1_SPECIAL_TOKENS,
                     description="DeepSeek-R1 and every R1-Distill: prompt ends <｜Assistant｜><think>\\n"),
        ChatTemplate("deepseek-v3.1", render_deepseek_v31, V31_SPECIAL_TOKENS, thinking_flag="thinking",
                     description="DeepSeek-V3.1 / V3.2 hybrid: thinking (<think>) or not (</think>)"),
        ChatTemplate("deepseek-v4", render_deepseek_v4, V4_SPECIAL_TOKENS, roles=("system", "user", "assistant", "tool"),
                     thinking_flag="thinking", description="DeepSeek-V4: chat or thinking mode"),
    )
}
TEMPLATE_NAMES: tuple[str, ...] = (*_FAMILIES, "hf")


def get_template(name: str, tokenizer: Any = None) -> ChatTemplate | HFChatTemplate:
    """The template family ``name`` (see ``TEMPLATE_NAMES``).

    ``hf`` uses the tokenizer's own ``chat_template`` and so needs ``tokenizer``.
    """
    if name == "hf":
        from dsft.templates.hf import HFChatTemplate

        return HFChatTemplate(tokenizer)
    if name not in _FAMILIES:
        raise DsftError(f"template.name: unknown template {name!r}; choose one of: {', '.join(TEMPLATE_NAMES)}, or auto")
    return _FAMILIES[name]


def detect_from_chat_template(chat_template: str | None) -> str | None:
    """The family whose signature a Jinja chat template carries (None when none matches).

    Signatures: dsft's own templates (exact); R1's generation prompt ``<｜Assistant｜><think>\\n``;
    V3.1's history header ``<｜Assistant｜></think>``; DeepSeek-LLM's ``'User: '`` / ``'Assistant:'``;
    V3's ``<｜Assistant｜>`` with no think handling at all. Other DeepSeek variants (e.g. R1-0528,
    whose prompt is a bare ``<｜Assistant｜>``) match none: use them through ``hf``.
    """
    if not chat_template:
        return None
    for name, family in _FAMILIES.items():
        if chat_template.strip() == family.chat_template.strip():
            return name
    # Released templates hold the newline either escaped in a JSON-decoded string or literal.
    if any(f"<｜Assistant｜><think>{nl}" in chat_template for nl in ("\\n", "\n")):
        return "deepseek-r1"
    if "<｜Assistant｜></think>" in chat_template:
        return "deepseek-v3.1"
    if "'User: '" in chat_template and "'Assistant:'" in chat_template:
        return "deepseek-llm"
    if "<｜Assistant｜>" in chat_template and "</think>" not in chat_template:
        return "deepseek-v3"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def detect_template(source: Any) -> str:
    """Template family of a model: ``source`` is a checkpoint directory, a tokenizer, or a config.

    Order: the config's ``model_type`` ``deepseek_v4`` (V4 ships no Jinja template); the tokenizer's
    chat template signature (see :func:`detect_from_chat_template`); any other chat template -> ``hf``. Nothing usable ->
    :class:`DsftError` asking for ``template.name``.
    """
    chat_template, model_type = _template_and_model_type(source)
    name = detect_from_chat_template(chat_template)
    if model_type == "deepseek_v4" and name != "deepseek-v4":
        return "deepseek-v4"  # V4 ships no Jinja template of its own; its config is the signature
    if name:
        return name
    if chat_template:
        return "hf"
    raise DsftError(
        f"template.name: cannot detect the chat template family of {_describe(source)} "
        f"(model_type={model_type!r}, no chat_template); set template.name to one of: {', '.join(TEMPLATE_NAMES)}"
    )


def _template_and_model_type(source: Any) -> tuple[str | None, str | None]:
    if isinstance(source, (str, Path)):
        directory = Path(source)
        if not directory.is_dir():
            raise DsftError(f"template detection: {directory} is not a model directory")
        config = _read_json(directory / "config.json")
        tok_config = _read_json(directory / "tokenizer_config.json")
        chat_template = _default_template(tok_config.get("chat_template"))
        jinja_file = directory / "chat_template.jinja"
        if not chat_template and jinja_file.is_file():
            chat_template = jinja_file.read_text(encoding="utf-8")
        return chat_template, config.get("model_type")
    if isinstance(source, dict):
        return _default_template(source.get("chat_template")), source.get("model_type")
    chat_template = _default_template(getattr(source, "chat_template", None))
    return chat_template, getattr(source, "model_type", None)


def _default_template(value: Any) -> str | None:
    """A chat_template field: a string, or a list of named templates (the "default" one is used)."""
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) and value else None


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else type(source).__name__
