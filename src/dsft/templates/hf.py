"""The ``hf`` family: any model's own Jinja ``chat_template``, with masks derived by rendering prefixes.

For each assistant turn k the template is rendered twice: the messages before it with the generation
prompt (the prompt) and the messages up to and including it without (prompt + turn). The turn's
target is the text the second adds to the first, up to and including the tokenizer's EOS (text the
template writes after EOS, such as ChatML's newline, is context: generation never produces it);
everything between targets is context. This needs
a prefix-stable template (rendering more messages only appends text); templates that rewrite earlier
turns (e.g. strip reasoning from history) fail with a clear error instead of a silently wrong mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dsft.data.conversation import Conversation
from dsft.errors import DsftError
from dsft.models.tokenizers import adds_special_tokens
from dsft.templates.base import (
    Rendered, Segment, is_plain_text, plain_text_segments, prompt_order_problems, supervision, supervision_runs,
    tokenize_runs_batch, tokenize_segments, trained_turns,
)
from dsft.templates.detect import detect_from_chat_template
from dsft.templates.reasoning import prompt_opens_think
from dsft.templates.registry import load_family
from dsft.templates.ollama_derived import derived_ollama_template, jinja_renderer
from dsft.templates.spec import OllamaTemplate, no_ollama_template


def openai_messages(conv: Conversation) -> list[dict[str, Any]]:
    """The conversation as OpenAI-form dicts (reasoning as ``reasoning_content``), without dsft's ``loss``."""
    out = []
    for message in conv.messages:
        record = message.to_openai()
        record.pop("loss", None)
        out.append(record)
    return out


def split_after_eos(turn: str, eos: str | None) -> tuple[str, str]:
    r"""Split an assistant turn's rendered text into what the model generates (up to and including the
    first EOS) and what the template writes after it (e.g. ChatML's ``"\n"`` after ``<|im_end|>``).

    Generation stops at EOS, so text after it is never produced by the model and is not supervised: this
    is what a template's ``{% generation %}`` markers would mark, for templates that carry none.

    >>> split_after_eos("Hello<|im_end|>\n", "<|im_end|>")
    ('Hello<|im_end|>', '\n')
    """
    cut = turn.find(eos) if eos else -1
    if cut < 0:
        return turn, ""
    end = cut + len(eos)
    return turn[:end], turn[end:]


class HFChatTemplate:
    """Render with the tokenizer's own chat template (``template.name: hf``; implements
    :class:`dsft.templates.spec.ChatTemplate`)."""

    name = "hf"
    description = "the model's own chat_template (masks by prefix rendering)"
    thinking_flag = "enable_thinking"
    vllm_reasoning_parser = None  # vLLM serves the model's own template as is
    tool_call_format = "model"  # whatever the model's template writes
    vllm_tool_parser = None  # unknown format: vLLM gets no tool parser
    vllm_tokenizer_mode = None  # vLLM's default for the architecture renders as the model was released
    reasoning_left_out_hint = ("The model's own chat template (its tokenizer's chat_template) writes no "
                               "reasoning_content, so the chain of thought is not trained: it is trained where the "
                               "template has a place for it (an R1 distill with template.name=deepseek-r1).")

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer

    @property
    def recommended_sampling(self) -> Mapping[str, float]:
        return {}  # the checkpoint's own generation_config.json says it

    def with_tokenizer(self, tokenizer: Any) -> HFChatTemplate:
        return HFChatTemplate(tokenizer)

    def prompt_opens_think(self, prompt: str) -> bool:
        return prompt_opens_think(prompt)

    # The model's own template renders two assistant turns in a row as it does; dsft cannot tell how.
    heads_every_assistant_turn = True

    @property
    def renders_tool_definitions(self) -> bool:
        """Whether the model's own template reads ``tools`` (transformers passes them to it)."""
        template = getattr(self.tokenizer, "chat_template", None) if self.tokenizer is not None else None
        return isinstance(template, str) and "tools" in template

    def parse_tool_calls(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """The model's own call format is unknown to dsft: the reply stays content."""
        return text, []

    def ollama_template(self) -> OllamaTemplate:
        """The Ollama template of the DeepSeek family whose signature the model's chat template carries, else
        one derived from the template's turn-by-turn layout (:mod:`dsft.templates.ollama_derived`).

        Ollama needs a Go template and an arbitrary Jinja one cannot be translated: a template that is
        neither is refused.
        """
        template = getattr(self.tokenizer, "chat_template", None) if self.tokenizer is not None else None
        if not isinstance(template, str) or not template:
            raise no_ollama_template(self.name, "the model's tokenizer has no chat_template to translate")
        family = detect_from_chat_template(template)
        if family is not None:
            return load_family(family).ollama_template()
        try:
            # A turn-by-turn template (ChatML: SmolLM2, Qwen2.5, ...) is rebuilt in Go and checked.
            # The runtime adds BOS only where the tokenizer does (the GGUF's add_bos_token): only that BOS is left
            # out of the Go template. SmolLM2's bos_token is ChatML's <|im_start|>, which its template writes itself.
            bos = getattr(self.tokenizer, "bos_token", None)
            bos = bos if bos and adds_special_tokens(self.tokenizer)[0] else None
            return derived_ollama_template(jinja_renderer(template), bos,
                                           [getattr(self.tokenizer, "eos_token", None) or ""])
        except DsftError as exc:
            raise no_ollama_template(
                self.name, f"the model's own chat_template is not a DeepSeek family's and its Go equivalent "
                f"could not be derived ({exc}); set template.name to the model's family if it has one") from exc

    @property
    def chat_template(self) -> str:
        template = getattr(self._tok(None), "chat_template", None)
        if not isinstance(template, str) or not template:
            raise DsftError("template.name=hf: the tokenizer has no chat_template; pick a DeepSeek family instead")
        return template

    def _tok(self, tokenizer: Any) -> Any:
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if tok is None:
            raise DsftError("template.name=hf renders with the model's own chat_template and needs its tokenizer")
        return tok

    def jinja_kwargs(self, thinking: bool | None) -> dict[str, Any]:
        return {} if thinking is None else {"enable_thinking": bool(thinking), "thinking": bool(thinking)}

    def _apply(self, tokenizer: Any, conv: Conversation, upto: int, add_generation_prompt: bool,
               thinking: bool | None) -> str:
        try:
            return self._tok(tokenizer).apply_chat_template(
                openai_messages(conv)[:upto], tools=conv.tools, tokenize=False,
                add_generation_prompt=add_generation_prompt, **self.jinja_kwargs(thinking),
            )
        except DsftError:
            raise
        except Exception as exc:  # jinja2 errors, raise_exception() in the template
            raise DsftError(f"template.name=hf: the model's chat_template failed to render: {exc}") from exc

    def prompt_problems(self, conv: Conversation, system_may_move: bool = False) -> list[tuple[int | None, str]]:
        """Role orders refused for a prompt: the rules every family shares (the model's own template may add more;
        it writes a late system message where it stands, so ``system_may_move`` changes nothing)."""
        return prompt_order_problems(conv, hoists_system=False)

    def check_conversation(self, conv: Conversation, masking: str = "assistant", thinking: bool | None = None) -> None:
        """Nothing to check without the tokenizer: what the model's own template refuses is known when it renders."""

    def render_prompt(self, conv: Conversation, thinking: bool | None = None, add_generation_prompt: bool = True) -> str:
        """The tokenizer's chat template with the generation prompt."""
        return self._apply(None, conv, len(conv.messages), add_generation_prompt, thinking)

    def reasoning_left_out(self, conv: Conversation, tokenizer: Any, masking: str = "assistant",
                           thinking: bool | None = None) -> bool:
        """Whether the template leaves the reasoning of a trained assistant turn out of the text it renders for the
        messages up to that turn (where :meth:`render_train` finds the turn's target): many models' templates
        drop ``reasoning_content``, or cut ``<think>`` out of the content, on every assistant turn. Rendered, not
        guessed from the template's source."""
        for k in sorted(trained_turns(conv, masking)):
            reasoning = (conv.messages[k].reasoning or "").strip()
            if reasoning and reasoning not in self._apply(tokenizer, conv, k + 1, False, thinking):
                return True
        return False

    def _segments_by_prefix(self, conv: Conversation, tokenizer: Any, trained: frozenset[int],
                 thinking: bool | None) -> list[Segment]:
        """Context and target segments by prefix rendering (see module doc)."""
        segments: list[Segment] = []
        done = ""  # text already placed in segments
        for k, message in enumerate(conv.messages):
            if message.role != "assistant":
                continue
            prompt = self._prefix_extend(tokenizer, conv, k, True, thinking, done)
            segments.append(Segment(prompt[len(done):], owner=k - 1 if k else None))
            full = self._prefix_extend(tokenizer, conv, k + 1, False, thinking, prompt)
            target, after_eos = split_after_eos(full[len(prompt):], self._tok(tokenizer).eos_token)
            segments.append(Segment(target, owner=k, target=k in trained))
            segments.append(Segment(after_eos, owner=k))
            done = full
        final = self._prefix_extend(tokenizer, conv, len(conv.messages), False, thinking, done)
        segments.append(Segment(final[len(done):], owner=len(conv.messages) - 1))
        return segments

    def _prefix_extend(self, tokenizer: Any, conv: Conversation, upto: int, gen: bool,
                       thinking: bool | None, prefix: str) -> str:
        text = self._apply(tokenizer, conv, upto, gen, thinking)
        if not text.startswith(prefix):
            raise DsftError(
                "template.name=hf: the model's chat_template is not prefix-stable (rendering message "
                f"{upto - 1} rewrites earlier text, e.g. it strips reasoning from history), so masks cannot "
                "be derived from it; use a DeepSeek template family or masking: all"
            )
        return text

    def _supervised_segments(self, conv: Conversation, tok: Any, masking: str,
                             thinking: bool | None) -> tuple[list[Segment], list[bool]]:
        trained = trained_turns(conv, masking)
        if is_plain_text(conv):
            segments = plain_text_segments(conv, trained, tok.bos_token or "", tok.eos_token or "")
        elif masking == "all":  # no boundaries needed: one render of the whole conversation
            text = self._apply(tok, conv, len(conv.messages), False, thinking)
            segments = [Segment(text, owner=None)]
        else:
            segments = self._segments_by_prefix(conv, tok, trained, thinking)
        return segments, supervision(segments, conv, masking)

    def render_train(self, conv: Conversation, tokenizer: Any, masking: str = "assistant",
                     thinking: bool | None = None) -> Rendered:
        """Ids and mask: assistant targets found by prefix rendering, tokenized without added specials."""
        tok = self._tok(tokenizer)
        return tokenize_segments(*self._supervised_segments(conv, tok, masking, thinking), tok)

    def render_train_many(self, convs: Sequence[Conversation], tokenizer: Any, masking: str = "assistant",
                          thinking: bool | None = None) -> list[Rendered]:
        """:meth:`render_train` for many conversations with one batched tokenizer call."""
        tok = self._tok(tokenizer)
        runs = [supervision_runs(*self._supervised_segments(conv, tok, masking, thinking)) for conv in convs]
        return tokenize_runs_batch(runs, tok)


FAMILY = HFChatTemplate()
