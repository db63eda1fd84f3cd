"""``TemplateFamily``: a DeepSeek family's renderer, its Jinja twin and its facts, as one value.

The Python renderer is the source of truth for training (ids + mask); the Jinja string
(``chat_template``) is what export and serving write into ``tokenizer_config.json`` for inference
engines. Tests check that both render every conversation identically. Each family module builds one
``TemplateFamily`` and the registry (:mod:`dsft.templates.registry`) names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from dsft.data.conversation import Conversation
from dsft.templates.base import (
    Rendered,
    Segment,
    check_messages,
    is_plain_text,
    plain_text_segments,
    prompt_order_problems,
    require_tokens,
    supervision,
    supervision_runs,
    tokenize_runs_batch,
    tokenize_segments,
    trained_turns,
)
from dsft.markers import BOS, EOS
from dsft.templates.reasoning import prompt_opens_think
from dsft.templates.spec import OllamaTemplate, no_ollama_template
from dsft.templates.tool_call_parsing import parse_tool_calls

JINJA_DIR = Path(__file__).resolve().parent / "jinja"

# A family renderer: (conversation, indices of trained assistant turns, add_generation_prompt,
# thinking) -> segments. It renders trained turns with their reasoning as the training target and
# every other turn exactly as the official template renders history.
RenderFn = Callable[[Conversation, frozenset[int], bool, "bool | None"], list[Segment]]


@lru_cache(maxsize=None)
def load_jinja(name: str) -> str:
    """The Jinja chat template shipped for family ``name`` (``jinja/NAME.jinja``)."""
    return (JINJA_DIR / f"{name}.jinja").read_text(encoding="utf-8")


@dataclass(frozen=True)
class TemplateFamily:
    """A DeepSeek chat-template family (implements :class:`dsft.templates.spec.ChatTemplate`).

    ``special_tokens`` are the marker strings the family writes (checked against the tokenizer before
    a training render); ``roles`` the message roles it can place; ``thinking_flag`` the Jinja variable
    that selects thinking mode (None for families without modes). ``reasoning``: ``none`` (no think
    format), ``always`` (every reply reasons: R1, whose prompt opens ``<think>``) or ``hybrid`` (the
    prompt opens it in thinking mode only). ``signature`` recognises the family's released Jinja
    template and ``model_types`` its ``config.json`` model types (detection, see
    :func:`dsft.templates.detect.detect_template`). ``hoists_system``: the template gathers every system
    message at the start, wherever it stands (so a later one cannot be rendered where it was sent).
    ``heads_every_assistant_turn``: two assistant turns in a row each open with the assistant header.
    """

    name: str
    render: RenderFn
    special_tokens: tuple[str, ...]
    description: str
    roles: tuple[str, ...] = ("system", "user", "assistant", "tool")
    thinking_flag: str | None = None
    reasoning: Literal["none", "always", "hybrid"] = "none"
    vllm_reasoning_parser: str | None = None
    tool_call_format: str = "none"
    # vLLM's ``--tool-call-parser`` for the calls this family writes (None: it writes none vLLM reads).
    vllm_tool_parser: str | None = None
    # The ``--tokenizer-mode`` vLLM must be given so that it renders prompts with the chat template it is
    # passed; None where its default already does. vLLM picks its own mode for some architectures (V3.2:
    # ``deepseek_v32``, V4: ``deepseek_v4``) that renders with DeepSeek's encoder and ignores
    # ``--chat-template`` and the tokenizer's template alike.
    vllm_tokenizer_mode: str | None = None
    # Whether OpenAI ``tools`` (definitions) are rendered into the prompt; the others need them described
    # in the system message.
    renders_tool_definitions: bool = False
    sampling: Mapping[str, float] = field(default_factory=dict, hash=False)
    ollama: OllamaTemplate | None = None
    signature: Callable[[str], bool] | None = None
    model_types: tuple[str, ...] = ()
    hoists_system: bool = True
    # Whether an assistant turn right after another assistant turn opens with the assistant header. V3.1 and V3.2
    # (as their official templates do) write it straight after the first turn's EOS, which no trained model has
    # seen: training counts such conversations and warns (dsft.training.examples).
    heads_every_assistant_turn: bool = True
    # Where a trained turn's reasoning has no place in this family, and what to do (training's warning ends with it).
    reasoning_left_out_hint: str = "template.thinking=false renders every turn without reasoning."

    def prompt_problems(self, conv: Conversation, system_may_move: bool = False) -> list[tuple[int | None, str]]:
        """Role orders this family's inference prompt cannot render faithfully (see :func:`prompt_order_problems`);
        with ``system_may_move`` a late system message is not one (the template moves it, as training does)."""
        return prompt_order_problems(conv, self.hoists_system and not system_may_move, self.heads_every_assistant_turn)

    @property
    def chat_template(self) -> str:
        """The Jinja chat template (for tokenizer_config.json / vLLM / GGUF)."""
        return load_jinja(self.name)

    @property
    def recommended_sampling(self) -> Mapping[str, float]:
        return dict(self.sampling)

    def with_tokenizer(self, tokenizer: Any) -> TemplateFamily:
        return self

    def prompt_opens_think(self, prompt: str) -> bool:
        """``always`` families reply inside a think block whatever the prompt (R1 opens it in the prompt,
        or writes ``<think>`` itself after tool results); the others when the prompt ends with ``<think>``."""
        return self.reasoning == "always" or prompt_opens_think(prompt)

    def parse_tool_calls(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """``(content, OpenAI-form calls)`` of a generated reply (see :mod:`dsft.templates.tool_call_parsing`)."""
        return parse_tool_calls(self.tool_call_format, text)

    def ollama_template(self) -> OllamaTemplate:
        if self.ollama is None:
            raise no_ollama_template(self.name)
        return self.ollama

    def segments(
        self, conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None
    ) -> list[Segment]:
        """The family's segments; a plain-text record (``meta["kind"] == "text"``) is BOS + text + EOS."""
        check_messages(conv, self.name, self.roles)
        if is_plain_text(conv):
            return plain_text_segments(conv, trained, BOS, EOS)
        return self.render(conv, trained, add_generation_prompt, thinking)

    def render_prompt(
        self, conv: Conversation, thinking: bool | None = None, add_generation_prompt: bool = True
    ) -> str:
        """The inference prompt: byte-identical to the official template with the generation prompt.

        ``thinking`` selects the mode of hybrid families (V3.1, V3.2, V4; None = the official default,
        non-thinking); the others ignore it.
        """
        return "".join(s.text for s in self.segments(conv, frozenset(), add_generation_prompt, thinking))

    def check_conversation(self, conv: Conversation, masking: str = "assistant", thinking: bool | None = None) -> None:
        """Build the training segments (the text, no tokens): what :meth:`render_train` refuses is refused here."""
        self.segments(conv, trained_turns(conv, masking), False, thinking)

    def render_train(
        self, conv: Conversation, tokenizer: Any, masking: str = "assistant", thinking: bool | None = None
    ) -> Rendered:
        """Token ids and supervised mask for training.

        Trained assistant turns (see :func:`dsft.templates.base.trained_turns`) keep their reasoning in
        the family's format; the other turns render as the official template renders history. For
        hybrid families ``thinking=None`` decides per trained turn: thinking mode when it carries
        reasoning, non-thinking otherwise.
        """
        require_tokens(tokenizer, self.special_tokens, self.name)
        trained = trained_turns(conv, masking)
        segments = self.segments(conv, trained, False, thinking)
        return tokenize_segments(segments, supervision(segments, conv, masking), tokenizer)

    def render_train_many(
        self, convs: Sequence[Conversation], tokenizer: Any, masking: str = "assistant", thinking: bool | None = None
    ) -> list[Rendered]:
        """:meth:`render_train` for many conversations with one batched tokenizer call (identical ids)."""
        require_tokens(tokenizer, self.special_tokens, self.name)
        all_runs = []
        for conv in convs:
            segments = self.segments(conv, trained_turns(conv, masking), False, thinking)
            all_runs.append(supervision_runs(segments, supervision(segments, conv, masking)))
        return tokenize_runs_batch(all_runs, tokenizer)

    def jinja_kwargs(self, thinking: bool | None) -> dict[str, Any]:
        """Extra ``apply_chat_template`` keyword arguments selecting the same mode in the Jinja template."""
        if self.thinking_flag is None or thinking is None:
            return {}
        return {self.thinking_flag: bool(thinking)}
