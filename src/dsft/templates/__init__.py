"""Chat templates: per-family renderers returning token ids + supervised mask, inference prompts, reasoning parsing.

Every family implements :class:`dsft.templates.spec.ChatTemplate`; :mod:`dsft.templates.registry` names
them. Names below load on first use, so a lower layer can read the dependency-free tables
(:mod:`~dsft.markers`, :mod:`~dsft.templates.registry`) without loading the renderers.

>>> from dsft.data.conversation import Conversation, Message
>>> from dsft.templates import get_template
>>> get_template("deepseek-v3").render_prompt(Conversation([Message("user", "Hi")]))
'<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time each name loads on first use (__getattr__ below)
    from dsft.templates.base import MASKING_STRATEGIES, Rendered, Segment
    from dsft.templates.detect import detect_template
    from dsft.templates.family import TemplateFamily
    from dsft.templates.reasoning import StreamingReasoningSplitter, split_reasoning
    from dsft.templates.registry import TEMPLATE_CHOICES, TEMPLATE_NAMES, get_template
    from dsft.templates.spec import ChatTemplate, OllamaTemplate

_EXPORTS = {
    "MASKING_STRATEGIES": "dsft.templates.base",
    "Rendered": "dsft.templates.base",
    "Segment": "dsft.templates.base",
    "ChatTemplate": "dsft.templates.spec",
    "OllamaTemplate": "dsft.templates.spec",
    "TemplateFamily": "dsft.templates.family",
    "StreamingReasoningSplitter": "dsft.templates.reasoning",
    "split_reasoning": "dsft.templates.reasoning",
    "TEMPLATE_CHOICES": "dsft.template_families",
    "TEMPLATE_NAMES": "dsft.templates.registry",
    "get_template": "dsft.templates.registry",
    "detect_template": "dsft.templates.detect",
}

__all__ = [
    "MASKING_STRATEGIES", "ChatTemplate", "OllamaTemplate", "Rendered", "Segment", "StreamingReasoningSplitter",
    "TEMPLATE_CHOICES", "TEMPLATE_NAMES", "TemplateFamily", "detect_template", "get_template", "split_reasoning",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dsft.templates' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
