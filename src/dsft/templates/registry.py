"""The template families by name: one line per family, the one list every choice of ``template.name`` comes from.

Adding a family is one module that builds a :class:`dsft.templates.spec.ChatTemplate` (see
docs/templates.md, "Adding a family") plus its line in :data:`FAMILIES`. The module imports no dsft
layer (families load on first use), so the config schema reads :data:`TEMPLATE_CHOICES` from here.

>>> from dsft.data.conversation import Conversation, Message
>>> get_template("deepseek-r1").render_prompt(Conversation([Message("user", "Hi")]))
'<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\\n'
"""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from dsft.errors import DsftError

if TYPE_CHECKING:
    from dsft.templates.spec import ChatTemplate

# name -> "module:attribute" of the family's spec. The order is the order of `dsft template list` and of
# detection by chat-template signature.
FAMILIES: dict[str, str] = {
    "deepseek-llm": "dsft.templates.deepseek_llm:FAMILY",
    "deepseek-v3": "dsft.templates.deepseek_v3:V3",
    "deepseek-r1": "dsft.templates.deepseek_v3:R1",
    "deepseek-v3.1": "dsft.templates.deepseek_v31:FAMILY",
    "deepseek-v3.2": "dsft.templates.deepseek_v32:FAMILY",
    "deepseek-v4": "dsft.templates.deepseek_v4:FAMILY",
    "hf": "dsft.templates.hf:FAMILY",
}
TEMPLATE_NAMES: tuple[str, ...] = tuple(FAMILIES)
TEMPLATE_CHOICES: tuple[str, ...] = ("auto", *TEMPLATE_NAMES)  # what template.name accepts


@lru_cache(maxsize=None)
def load_family(name: str) -> ChatTemplate:
    """The family spec registered as ``name`` (imported on first use)."""
    if name not in FAMILIES:
        raise DsftError(f"template.name: unknown template {name!r}; choose one of: {', '.join(TEMPLATE_NAMES)}, or auto")
    module, attribute = FAMILIES[name].split(":")
    return getattr(import_module(module), attribute)


def get_template(name: str, tokenizer: Any = None) -> ChatTemplate:
    """The template family ``name`` (see :data:`TEMPLATE_NAMES`), bound to ``tokenizer``.

    ``hf`` renders with the tokenizer's own ``chat_template`` and so needs ``tokenizer`` to render.
    """
    return load_family(name).with_tokenizer(tokenizer)


def all_families() -> list[ChatTemplate]:
    """Every registered family, in registry order."""
    return [load_family(name) for name in FAMILIES]
