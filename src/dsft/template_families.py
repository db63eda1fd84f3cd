"""The chat-template families by name: one line per family, the one list every choice of
``template.name`` comes from.

A table, not code: it names each family's module and never imports it (``dsft.templates.registry`` loads
a family on first use), so every layer may read it; the config schema takes ``template.name``'s choices
from here. Adding a family is one module under ``dsft/templates/`` that builds a
:class:`dsft.templates.spec.ChatTemplate` (see docs/templates.md, "Adding a family") plus its line in
:data:`FAMILIES`.
"""

from __future__ import annotations

import re

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


def template_name_hint(name: str) -> str | None:
    """The family a mistyped ``template.name`` means when it is one written another way: in lower case with ``-``
    for ``_`` (vLLM's parser ``deepseek_r1``, the model's ``DeepSeek-V3.1``), without the version's dot (vLLM's tool
    parser ``deepseek_v31``) or the short form (``r1``). A name
    that is no family written another way (``deepseek-r9``) gets none: a guess there would pick a model.

    >>> template_name_hint("r1"), template_name_hint("deepseek_r1"), template_name_hint("DeepSeek-V3.1")
    ('deepseek-r1', 'deepseek-r1', 'deepseek-v3.1')
    >>> template_name_hint("deepseek_v32"), template_name_hint("v31")
    ('deepseek-v3.2', 'deepseek-v3.1')
    >>> template_name_hint("deepseek-r9"), template_name_hint("qwen"), template_name_hint("deepseek_v35")
    (None, None, None)
    """
    folded = name.strip().lower().replace("_", "-")
    dotted = re.sub(r"(?<=v\d)(?=\d$)", ".", folded)  # vLLM's tool parsers deepseek_v31/_v32, V3.2's model_type
    for form in dict.fromkeys((folded, dotted)):
        for candidate in (form, f"deepseek-{form}", form.replace("deepseek", "deepseek-", 1)):
            if candidate in FAMILIES and candidate != name:
                return candidate
    return None
