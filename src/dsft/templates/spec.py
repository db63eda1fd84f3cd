"""``ChatTemplate``: what every template family answers, the one interface the rest of dsft asks.

A family owns every fact about itself: how it renders training examples (ids + supervised mask) and
inference prompts, its Jinja twin, whether its prompts leave the model inside a ``<think>`` block,
its recommended sampling, vLLM's reasoning parser for it, its Ollama (Go) template and its tool-call
format. Callers (training, eval, export, serve) ask the family and never match its name.

Two classes implement the Protocol: :class:`dsft.templates.family.TemplateFamily` (DeepSeek families,
one module each) and :class:`dsft.templates.hf.HFChatTemplate` (the model's own chat_template).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dsft.errors import UnsupportedError

if TYPE_CHECKING:
    from dsft.data.conversation import Conversation
    from dsft.templates.base import Rendered


@dataclass(frozen=True)
class OllamaTemplate:
    """What an Ollama Modelfile needs: the Go ``TEMPLATE`` text (no BOS: llama.cpp adds it) and the stops."""

    template: str
    stops: tuple[str, ...]


def no_ollama_template(name: str, why: str = "") -> UnsupportedError:
    """The error for a family without an Ollama template (``why`` says what is missing)."""
    return UnsupportedError(
        f"ollama export: no Ollama template for chat template {name!r}{': ' + why if why else ''}; "
        "export --format gguf and write the Modelfile TEMPLATE by hand, or train with a family that has one "
        "(see `dsft template list`)"
    )


@runtime_checkable
class ChatTemplate(Protocol):
    """A chat-template family (see the module doc)."""

    name: str
    description: str
    # The Jinja variable that selects thinking mode (None: the family has no modes).
    thinking_flag: str | None
    # vLLM's ``--reasoning-parser`` for this family's outputs (None: it does not reason).
    vllm_reasoning_parser: str | None
    # How assistant tool calls are written: "none", "deepseek-v3", "deepseek-v3.1", "dsml" or "model".
    tool_call_format: str
    # vLLM's ``--tool-call-parser`` for those calls (None: vLLM gets no tool parser).
    vllm_tool_parser: str | None
    # The ``--tokenizer-mode`` that makes vLLM render with the template it is given (None: its default).
    vllm_tokenizer_mode: str | None
    # Whether OpenAI ``tools`` definitions are rendered into the prompt (else: describe them in the system
    # message; a server refuses ``tools`` rather than drop them silently).
    renders_tool_definitions: bool
    # Whether an assistant turn right after another assistant turn opens with the assistant header (False: it is
    # written straight after the first turn's end-of-sentence token, a layout no trained model has seen).
    heads_every_assistant_turn: bool
    # What to do where this family leaves a trained turn's reasoning out (training's warning ends with it).
    reasoning_left_out_hint: str

    @property
    def chat_template(self) -> str:
        """The Jinja chat template (for tokenizer_config.json / vLLM / GGUF)."""
        ...

    @property
    def recommended_sampling(self) -> Mapping[str, float]:
        """Sampling the model card recommends (``temperature``, ``top_p``); empty when it gives none."""
        ...

    def with_tokenizer(self, tokenizer: Any) -> ChatTemplate:
        """The family bound to the model's tokenizer (only ``hf`` reads it; the others return themselves)."""
        ...

    def render_prompt(self, conv: Conversation, thinking: bool | None = None,
                      add_generation_prompt: bool = True) -> str:
        """The inference prompt: byte-identical to the official template with the generation prompt."""
        ...

    def prompt_problems(self, conv: Conversation, system_may_move: bool = False) -> list[tuple[int | None, str]]:
        """Role orders the inference prompt cannot render faithfully: ``(message index or None, reason)``
        (see :func:`dsft.templates.base.prompt_order_problems`); empty when the order is fine.
        ``system_may_move``: a system message after the first turn is no problem where the family moves it to the
        start (as training renders it: eval of the run's own data), only where a client put it there (serve)."""
        ...

    def check_conversation(self, conv: Conversation, masking: str = "assistant", thinking: bool | None = None) -> None:
        """Raise what :meth:`render_train` would raise about ``conv`` itself (a role or tool call the family has no
        place for), without a tokenizer: so that a command refuses it before one loads (``hf``: nothing; its
        refusals are the model's template's)."""
        ...

    def render_train(self, conv: Conversation, tokenizer: Any, masking: str = "assistant",
                     thinking: bool | None = None) -> Rendered:
        """Token ids and supervised mask for training."""
        ...

    def render_train_many(self, convs: Sequence[Conversation], tokenizer: Any, masking: str = "assistant",
                          thinking: bool | None = None) -> list[Rendered]:
        """:meth:`render_train` for many conversations (what training calls; identical results)."""
        ...

    def jinja_kwargs(self, thinking: bool | None) -> dict[str, Any]:
        """Extra ``apply_chat_template`` keyword arguments selecting the same mode in the Jinja template."""
        ...

    def prompt_opens_think(self, prompt: str) -> bool:
        """Whether the reply to ``prompt`` starts inside a think block, so its text before ``</think>`` is
        reasoning even without a ``<think>`` tag (the one rule eval and serve split outputs by)."""
        ...

    def parse_tool_calls(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """``(content, OpenAI-form tool calls)`` of a generated reply: a whole calls block at its end, read
        back as the family writes it; ``(text, [])`` when there is none, it is cut off, or the family's
        format has no parser (``hf``)."""
        ...

    def ollama_template(self) -> OllamaTemplate:
        """The Ollama Go template; :class:`UnsupportedError` naming the fix when the family has none."""
        ...
