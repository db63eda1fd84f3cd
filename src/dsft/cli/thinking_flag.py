"""The notice for ``--thinking/--no-thinking`` given with a template that has no thinking mode.

V3, deepseek-llm and R1 (which always reasons) render the same prompt whatever the flag says, so the flag is
probably meant for another template. Every command that takes the flag (``dsft template render``, ``dsft data
inspect``, ``dsft eval``, ``dsft compare``, ``dsft chat``) says so through :func:`say_unused_thinking`: one stderr
line, a notice, not a refusal. Whether a family has modes is the template registry's fact
(:func:`dsft.templates.registry.unused_thinking`); this module only words it for the command line.
"""

from __future__ import annotations

import typer

from dsft.templates import ChatTemplate, get_template
from dsft.templates.registry import unused_thinking_notice


def say_unused_thinking(template: str | ChatTemplate, thinking: bool | None) -> None:
    """One stderr line where ``--thinking``/``--no-thinking`` (``thinking``) changes nothing for ``template`` (a
    family or its name). Commands whose family is known only once the model is open (eval, compare, chat) call it
    then: eval and compare with the results, chat before the first prompt."""
    family = get_template(template) if isinstance(template, str) else template
    if notice := unused_thinking_notice(family, thinking, "--thinking" if thinking else "--no-thinking"):
        typer.echo(notice, err=True)
