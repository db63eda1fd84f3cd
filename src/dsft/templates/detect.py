"""Which template family a model uses, from its files: ``config.json`` model type, then the chat template.

Each family declares its own signature (a predicate on a Jinja chat template) and model types
(:class:`dsft.templates.family.TemplateFamily`); detection asks them in registry order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.templates.family import TemplateFamily
from dsft.templates.registry import TEMPLATE_NAMES, all_families


def _deepseek_families() -> list[TemplateFamily]:
    return [f for f in all_families() if isinstance(f, TemplateFamily)]


def detect_from_chat_template(chat_template: str | None) -> str | None:
    """The family whose signature a Jinja chat template carries (None when none matches).

    dsft's own templates match exactly; otherwise each family's ``signature`` is asked in registry
    order (R1's generation prompt ``<｜Assistant｜><think>\\n``, V3.1's history header
    ``<｜Assistant｜></think>``, DeepSeek-LLM's ``'User: '`` / ``'Assistant:'``, V3's ``<｜Assistant｜>``
    with no think handling at all). Other DeepSeek variants (e.g. R1-0528, whose prompt is a bare
    ``<｜Assistant｜>``) match none: use them through ``hf``.
    """
    if not chat_template:
        return None
    families = _deepseek_families()
    for family in families:
        if chat_template.strip() == family.chat_template.strip():
            return family.name
    for family in families:
        if family.signature is not None and family.signature(chat_template):
            return family.name
    return None


def detect_template(source: Any) -> str:
    """Template family of a model: ``source`` is a checkpoint directory, a tokenizer, or a config.

    Order: a family that claims the config's ``model_type`` (V4 and V3.2 ship no Jinja template);
    the tokenizer's chat template signature (see :func:`detect_from_chat_template`); any other chat
    template -> ``hf``. Nothing usable -> :class:`DsftError` asking for ``template.name``.
    """
    chat_template, model_type = _template_and_model_type(source)
    by_type = [f.name for f in _deepseek_families() if model_type in f.model_types]
    if by_type:
        return by_type[0]
    name = detect_from_chat_template(chat_template)
    if name:
        return name
    if chat_template:
        return "hf"
    raise DsftError(
        f"template.name: cannot detect the chat template family of {_describe(source)} "
        f"(model_type={model_type!r}, no chat_template); set template.name to one of: {', '.join(TEMPLATE_NAMES)}"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


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
