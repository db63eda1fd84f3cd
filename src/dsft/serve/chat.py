"""``dsft chat``: a terminal conversation with a model, streamed, reasoning shown dimmed.

Lines come from any text stream (a terminal or a pipe); ``/reset`` clears the history, ``/system TEXT``
sets the system prompt (and clears the history), ``/help`` lists the commands, ``/exit`` or end of input
quits. A line that is not UTF-8 (a GBK terminal) is refused with the encoding it reads as; the session goes
on. The prompt is the training template's rendering, as in ``dsft serve``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.console import Console

from dsft.data.conversation import Conversation, Message
from dsft.data.validate import find_bad_unicode
from dsft.errors import DsftError
from dsft.serve.generation import GenerationRequest, RowResult, generate_batch
from dsft.serve.prompts import generation_starts_in_reasoning, render_chat_prompt, tokenize_prompt
from dsft.serve.serving_model import ServingModel
from dsft.templates.reasoning import StreamingReasoningSplitter

HELP = "commands: /reset (clear history), /system TEXT (set system prompt), /help (this list), /exit"


@dataclass
class ChatSession:
    """The conversation so far and how to sample replies."""

    serving: ServingModel
    max_tokens: int = 512
    temperature: float | None = None
    thinking: bool | None = None
    seed: int | None = None
    system: str | None = None
    history: list[Message] = field(default_factory=list)

    def reset(self) -> None:
        self.history.clear()

    def set_system(self, text: str) -> None:
        self.system = text or None
        self.history.clear()

    def reply(self, user_text: str, console: Console) -> Message:
        """Generate the assistant's answer to ``user_text``, printing it as it streams."""
        messages = ([Message("system", self.system)] if self.system else []) + self.history
        messages.append(Message("user", user_text))
        prompt = render_chat_prompt(self.serving.template_name, self.serving.tokenizer, Conversation(messages),
                                    self.thinking)
        prompt_ids = tokenize_prompt(self.serving.tokenizer, prompt, add_special_tokens=False)
        room = self.serving.max_model_len - len(prompt_ids)
        if room <= 0:
            raise DsftError(f"the conversation has {len(prompt_ids)} tokens, the context length is "
                            f"{self.serving.max_model_len}; type /reset to start over")
        # top_p stays the checkpoint's recommendation; the temperature may be overridden.
        params = self.serving.sampling(min(self.max_tokens, room), self.temperature, seed=self.seed)
        request = GenerationRequest(prompt_ids, params)
        splitter = StreamingReasoningSplitter() if generation_starts_in_reasoning(
            self.serving.template_name, prompt) else None
        reasoning_parts: list[str] = []
        content_parts: list[str] = []

        def show(piece: str, finished: bool) -> None:
            reasoning, content = splitter.feed(piece) if splitter else ("", piece)
            if finished and splitter:
                tail = splitter.finish()
                reasoning, content = reasoning + tail[0], content + tail[1]
            if reasoning:
                reasoning_parts.append(reasoning)
                console.print(reasoning, style="dim", end="", markup=False, emoji=False, highlight=False,
                              soft_wrap=True)
            if content:
                content_parts.append(content)
                console.print(content, end="", markup=False, emoji=False, highlight=False, soft_wrap=True)

        def emit(_: int, piece: str, result: RowResult | None, __: object = None) -> None:
            show(piece, result is not None)

        with self.serving.adapter_active(self.serving.default_adapter):
            result = generate_batch(self.serving.model, self.serving.tokenizer, [request], self.serving.eos_ids, emit)[0]
        if result.error is not None:
            raise result.error
        console.print()
        answer = Message("assistant", "".join(content_parts), reasoning="".join(reasoning_parts) or None)
        self.history += [messages[-1], answer]
        return answer


def run_chat(session: ChatSession, lines: Iterable[str], console: Console, interactive: bool) -> int:
    """Read ``lines`` until ``/exit`` or their end; returns the number of answered turns."""
    if interactive:
        console.print(f"[dim]{HELP}[/dim]")
    answered = 0
    for raw in _prompted(lines, console, interactive):
        line = raw.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if bad := find_bad_unicode(line):  # undecodable input bytes: the tokenizer would end the session
            console.print(f"line not sent: {bad}", style="dim", markup=False)
            continue
        if line == "/help":
            console.print(f"[dim]{HELP}[/dim]")
        elif line == "/reset":
            session.reset()
            console.print("[dim](history cleared)[/dim]")
        elif line == "/system" or line.startswith("/system "):
            session.set_system(line[len("/system"):].strip())
            console.print("[dim](system prompt set; history cleared)[/dim]")
        elif line.startswith("/"):
            console.print(f"[dim]unknown command {line.split()[0]}; {HELP}[/dim]")
        else:
            session.reply(line, console)
            answered += 1
    return answered


def _prompted(lines: Iterable[str], console: Console, interactive: bool) -> Iterable[str]:
    """Yield input lines, showing a ``>>>`` prompt before each when a person is typing."""
    iterator = iter(lines)
    while True:
        if interactive:
            console.print("[bold]>>> [/bold]", end="")
        try:
            yield next(iterator)
        except StopIteration:
            return
