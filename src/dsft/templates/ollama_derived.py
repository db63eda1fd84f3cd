"""An Ollama (Go) template derived from a model's own Jinja chat template, for turn-by-turn layouts.

Jinja cannot be translated to Go in general, but most chat templates (ChatML: SmolLM2, Qwen2.5, ...) write
each message as ``PREFIX(role) + content + SUFFIX(role)``, optionally a default system block when the
conversation has none, and a generation prompt. Those pieces are read off renderings of conversations with
placeholder contents, the Go template is built from them, and the layout is checked by re-rendering test
conversations both ways: a template whose output the layout does not reproduce is refused, never guessed.

>>> chatml = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\\n{{ m['content'] }}<|im_end|>\\n{% endfor %}"
...           "{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}")
>>> layout = derive_layout(jinja_renderer(chatml))
>>> layout.user_prefix, layout.user_suffix, layout.generation_prompt
('<|im_start|>user\\n', '<|im_end|>\\n', '<|im_start|>assistant\\n')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dsft.errors import DsftError
from dsft.templates.ollama_go import go_newline
from dsft.templates.spec import OllamaTemplate

# (messages as (role, content) pairs, add_generation_prompt) -> rendered text
Renderer = Callable[[Sequence[tuple[str, str]], bool], str]
SYS, U1, A1, U2 = "SYSTEM7f3a", "USER1c9e", "ASSISTANT4b2d", "USER8e51"
_LOOP_HEAD = '{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}'


@dataclass(frozen=True)
class TurnLayout:
    """The pieces around each message's content, as the Jinja template writes them (BOS excluded)."""

    system_prefix: str
    system_suffix: str
    default_system: str  # written when the conversation has no system message
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    generation_prompt: str

    def render(self, messages: Sequence[tuple[str, str]], add_generation_prompt: bool) -> str:
        """What the Go template renders (Ollama: the last assistant message stays open, no suffix)."""
        systems = [content for role, content in messages if role == "system"]
        out = [self.system_prefix + systems[-1] + self.system_suffix if systems else self.default_system]
        for i, (role, content) in enumerate(messages):
            last = i == len(messages) - 1
            if role == "user":
                out.append(self.user_prefix + content + self.user_suffix)
            elif role == "assistant":
                out.append(self.assistant_prefix + content + ("" if last else self.assistant_suffix))
            if last and role != "assistant" and add_generation_prompt:
                out.append(self.generation_prompt)
        return "".join(out)

    def go_template(self) -> str:
        g = go_newline
        return (
            f'{{{{- if .System }}}}{g(self.system_prefix)}{{{{ .System }}}}{g(self.system_suffix)}'
            f'{{{{- else }}}}{g(self.default_system)}{{{{- end }}}}'
            + _LOOP_HEAD
            + f'{{{{- if eq .Role "user" }}}}{g(self.user_prefix)}{{{{ .Content }}}}{g(self.user_suffix)}'
            + f'{{{{- else if eq .Role "assistant" }}}}{g(self.assistant_prefix)}{{{{ .Content }}}}'
            + f'{{{{- if not $last }}}}{g(self.assistant_suffix)}{{{{- end }}}}'
            + '{{- end }}'
            + f'{{{{- if and $last (ne .Role "assistant") }}}}{g(self.generation_prompt)}{{{{- end }}}}'
            + '{{- end }}'
        )


def _between(text: str, *marks: str) -> list[str]:
    """The pieces of ``text`` before, between and after ``marks`` (each must occur once, in order)."""
    pieces, pos = [], 0
    for mark in marks:
        at = text.find(mark, pos)
        if at < 0 or text.count(mark) != 1:
            raise DsftError(f"placeholder {mark} not rendered once")
        pieces.append(text[pos:at])
        pos = at + len(mark)
    return pieces + [text[pos:]]


def _strip(prefix: str, text: str) -> str:
    if not text.startswith(prefix):
        raise DsftError("the template's pieces do not compose turn by turn")
    return text[len(prefix):]


def derive_layout(render: Renderer, bos: str | None = None) -> TurnLayout:
    """Read the :class:`TurnLayout` off renderings with placeholder contents (:class:`DsftError` if none fits)."""
    chat = [("system", SYS), ("user", U1), ("assistant", A1), ("user", U2)]
    head, sys_to_u1, u1_to_a1, a1_to_u2, after_u2_gen = _between(render(chat, True), SYS, U1, A1, U2)
    user_suffix = _between(render(chat, False), SYS, U1, A1, U2)[-1]
    generation_prompt = _strip(user_suffix, after_u2_gen)
    assistant_prefix = _strip(user_suffix, u1_to_a1)
    try:
        system_suffix = _between(render(chat[:1], False), SYS)[1]
    except Exception:  # noqa: BLE001 - templates may refuse a conversation without a user turn
        system_suffix = ""
    if not sys_to_u1.startswith(system_suffix):
        system_suffix = ""
    user_prefix = sys_to_u1[len(system_suffix):]
    no_system_head = _between(render(chat[1:2], True), U1)[0]
    if not a1_to_u2.endswith(user_prefix) or not no_system_head.endswith(user_prefix):
        raise DsftError("the template's pieces do not compose turn by turn")
    strip_bos = (lambda text: text.removeprefix(bos)) if bos else (lambda text: text)
    return TurnLayout(
        system_prefix=strip_bos(head), system_suffix=system_suffix,
        default_system=strip_bos(no_system_head[: len(no_system_head) - len(user_prefix)]),
        user_prefix=user_prefix, user_suffix=user_suffix, assistant_prefix=assistant_prefix,
        assistant_suffix=a1_to_u2[: len(a1_to_u2) - len(user_prefix)], generation_prompt=generation_prompt,
    )


CHECK_CONVERSATIONS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "What is 2+2?"),),
    (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "写一首诗。")),
    (("user", "Hi"), ("assistant", "Hello!"), ("user", "Again"), ("assistant", "Sure.")),
)


def derived_ollama_template(render: Renderer, bos: str | None, stops: Sequence[str]) -> OllamaTemplate:
    """The Go template for a turn-by-turn Jinja template, checked on :data:`CHECK_CONVERSATIONS`."""
    layout = derive_layout(render, bos)
    for messages in CHECK_CONVERSATIONS:
        ends_with_assistant = messages[-1][0] == "assistant"
        expected = render(messages, not ends_with_assistant)
        if bos:
            expected = expected.removeprefix(bos)
        if ends_with_assistant:
            expected = expected.removesuffix(layout.assistant_suffix)
        if layout.render(messages, not ends_with_assistant) != expected:
            raise DsftError("the derived turn layout does not reproduce the template's own rendering")
    pieces = (layout.system_prefix, layout.system_suffix, layout.default_system, layout.user_prefix,
              layout.user_suffix, layout.assistant_prefix, layout.assistant_suffix, layout.generation_prompt)
    if any("{{" in piece or "}}" in piece for piece in pieces):
        raise DsftError("the template writes Go template braces")
    header = layout.user_prefix.split("\n")[0].strip()
    return OllamaTemplate(layout.go_template(), tuple(dict.fromkeys(s for s in (*stops, header) if s)))


def jinja_renderer(chat_template: str, **variables: object) -> Renderer:
    """A :data:`Renderer` for a Jinja chat template string (transformers' sandboxed environment)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(messages: Sequence[tuple[str, str]], add_generation_prompt: bool) -> str:
        conversation = [{"role": role, "content": content} for role, content in messages]
        rendered, _ = render_jinja_template([conversation], chat_template=chat_template,
                                            add_generation_prompt=add_generation_prompt, **variables)
        return rendered[0]

    return render
