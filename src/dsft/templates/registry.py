"""The template families by name, loaded on first use from the table in :mod:`dsft.template_families`
(one line per family; adding a family is one module plus its line there, see docs/templates.md).

>>> from dsft.data.conversation import Conversation, Message
>>> get_template("deepseek-r1").render_prompt(Conversation([Message("user", "Hi")]))
'<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\\n'
"""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from dsft.errors import DsftError
from dsft.template_families import FAMILIES, TEMPLATE_NAMES, template_name_hint

if TYPE_CHECKING:
    from dsft.templates.spec import ChatTemplate



def check_template_name(name: str, where: str = "template.name") -> None:
    """Refuse ``name`` when it is neither a registered family nor ``auto``, naming ``where`` it was given
    (``template.name``, ``--template``); imports no family, so a command can check it before loading anything."""
    if name != "auto" and name not in FAMILIES:
        raise _unknown_template(name, where)


def _unknown_template(name: str, where: str) -> DsftError:
    hint = template_name_hint(name) if isinstance(name, str) else None
    if hint:
        return DsftError(f"{where}: unknown template {name!r}; did you mean {hint!r}?")
    return DsftError(f"{where}: unknown template {name!r}; choose one of: {', '.join(TEMPLATE_NAMES)}, or auto")


@lru_cache(maxsize=None)
def load_family(name: str) -> ChatTemplate:
    """The family spec registered as ``name`` (imported on first use)."""
    if name not in FAMILIES:
        raise _unknown_template(name, "template.name")
    module, attribute = FAMILIES[name].split(":")
    return getattr(import_module(module), attribute)


def get_template(name: str, tokenizer: Any = None) -> ChatTemplate:
    """The template family ``name`` (see :data:`TEMPLATE_NAMES`), bound to ``tokenizer``.

    ``hf`` renders with the tokenizer's own ``chat_template`` and so needs ``tokenizer`` to render.
    """
    return load_family(name).with_tokenizer(tokenizer)


def unused_thinking(family: ChatTemplate, thinking: bool | None) -> str | None:
    """Why a thinking mode asked of ``family`` changes nothing: it has none (V3, deepseek-llm, R1, which always
    reasons). None where no mode was asked or the family has modes. The one test of that fact: the notice below
    and what eval records as its thinking mode both ask it.

    >>> unused_thinking(get_template("deepseek-r1"), True)
    'template deepseek-r1 has no thinking mode'
    >>> unused_thinking(get_template("deepseek-v3.1"), True) is None
    True
    """
    if thinking is None or family.thinking_flag is not None:
        return None
    return f"template {family.name} has no thinking mode"


def unused_thinking_notice(family: ChatTemplate, thinking: bool | None, flag: str = "--thinking") -> str | None:
    """The notice for a thinking mode asked of a family that has none (see :func:`unused_thinking`): the flag
    changes nothing, so whoever gave it probably meant another template. None when it is no such case.

    >>> unused_thinking_notice(get_template("deepseek-r1"), False, "--no-thinking")
    'notice: --no-thinking: template deepseek-r1 has no thinking mode; the flag changes nothing'
    >>> unused_thinking_notice(get_template("deepseek-v3.1"), False) is None
    True
    """
    reason = unused_thinking(family, thinking)
    return None if reason is None else f"notice: {flag}: {reason}; the flag changes nothing"


def all_families() -> list[ChatTemplate]:
    """Every registered family, in registry order."""
    return [load_family(name) for name in FAMILIES]
