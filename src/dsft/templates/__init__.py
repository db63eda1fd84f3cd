"""Chat templates: per-family renderers returning token ids + supervised mask, inference prompts, reasoning parsing.

>>> from dsft.data.conversation import Conversation, Message
>>> get_template("deepseek-v3").render_prompt(Conversation([Message("user", "Hi")]))
'<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>'
"""

from dsft.templates.base import MASKING_STRATEGIES, Rendered, Segment
from dsft.templates.chat_template import ChatTemplate
from dsft.templates.reasoning import StreamingReasoningSplitter, split_reasoning
from dsft.templates.registry import TEMPLATE_NAMES, detect_template, get_template

__all__ = [
    "MASKING_STRATEGIES", "ChatTemplate", "Rendered", "Segment", "StreamingReasoningSplitter", "TEMPLATE_NAMES",
    "detect_template", "get_template", "split_reasoning",
]
