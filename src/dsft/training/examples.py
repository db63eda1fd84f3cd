"""Conversations -> tokenized training examples, through the template's renderer.

The renderer (dsft.templates) builds ids and the supervised mask together; labels come from that mask
in one place (``Rendered.labels()``), never from pad ids. Here we only apply it over a split and account
for what could not become a training example (no supervised token, or longer than the row).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsft.data.conversation import Conversation
from dsft.errors import ConfigError, DsftError
from dsft.templates import ChatTemplate, Rendered
from dsft.templates.base import trained_turns
from dsft.training.ranks import warn_for_job

log = logging.getLogger(__name__)

@dataclass
class TokenizedSplit:
    """One split's rendered examples plus what was dropped and why (counts by reason): SFT rows here,
    preference pairs, labelled completions and GRPO prompts in :mod:`dsft.training.preference_examples`."""

    examples: list[dict[str, Any]]
    dropped: dict[str, int] = field(default_factory=dict)
    # Records whose ``tools`` definitions the template has no place for (trained without them).
    tools_not_rendered: int = 0
    # Conversations trained without some of their trained turns' reasoning (the template has no place for it).
    reasoning_not_rendered: int = 0
    # Conversations with two assistant turns in a row that the template writes with no header between them.
    assistant_turns_run_together: int = 0
    # For a drop reason that concerns the record itself: the first such record's origin and why.
    first: dict[str, str] = field(default_factory=dict)

    def drop(self, reason: str, first: str = "") -> None:
        """Count one example dropped for ``reason``; ``first`` describes it when it is the first."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if first:
            self.first.setdefault(reason, first)


# What each drop reason means to the user, and the key that changes it.
DROP_REASONS = {
    "longer_than_max_seq_len": "longer than train.max_seq_len ({max_len} tokens, rendered with the template; raise it, "
                               "or filter by length with data.clean.max_tokens)",
    "no_supervised_tokens": "with no supervised token (template.masking, or every assistant turn has loss: false)",
    "template_cannot_render": "the template cannot render (first: {first})",
    "control_token_in_text": "holding a tokenizer control token written as text (first: {first})",
}


def describe_dropped(split: TokenizedSplit, name: str, max_len: int) -> str | None:
    """``N of M train examples are not trained on: K longer than ...`` for a split that dropped any, else None.

    >>> describe_dropped(TokenizedSplit([{}], {"longer_than_max_seq_len": 3}), "train", 128)
    '3 of 4 train examples are not trained on: 3 longer than train.max_seq_len (128 tokens, rendered with the template; raise it, or filter by length with data.clean.max_tokens)'
    """
    if not split.dropped:
        return None
    total = len(split.examples) + sum(split.dropped.values())
    parts = [f"{count} {DROP_REASONS.get(reason, reason).format(max_len=max_len, first=split.first.get(reason, ''))}"
             for reason, count in split.dropped.items()]
    return f"{sum(split.dropped.values())} of {total} {name} examples are not trained on: " + "; ".join(parts)


def unrendered_tools(records: Sequence[Any], template: ChatTemplate) -> int:
    """How many ``records`` (conversations or preference records) carry ``tools`` the template does not
    render; said once as a warning, since the model then learns the calls without the definitions."""
    unrendered = 0 if template.renders_tool_definitions else sum(1 for record in records if record.tools)
    if unrendered:
        # Every process of a launched job renders the same records: said once, by the main process.
        warn_for_job(log, "%d conversation(s) carry tool definitions (`tools`), which the %s template does not "
                     "render: the model is trained on their calls without seeing the definitions. Describe the "
                     "tools in the system message (as at inference), or use a template that renders them "
                     "(deepseek-v3.2, deepseek-v4)",
                     unrendered, template.name)
    return unrendered


def assistant_turns_run_together(conversations: Sequence[Conversation], template: ChatTemplate,
                                 out: TokenizedSplit) -> None:
    """Count (into ``out``) and warn of the conversations holding an assistant turn right after another, where the
    template writes the second straight after the first's end-of-sentence token (V3.1, V3.2, as their official
    templates do): a layout the model never saw, whose second turn trains text after EOS. Trained as written."""
    if template.heads_every_assistant_turn:
        return
    for conversation in conversations:
        roles = [m.role for m in conversation.messages]
        index = next((i for i in range(1, len(roles)) if roles[i - 1] == roles[i] == "assistant"), None)
        if index is not None:
            out.assistant_turns_run_together += 1
            out.first.setdefault("assistant_turns_run_together",
                                 f"{conversation.meta.get('origin', '?')}: {conversation.named(f'messages[{index}]')}")
    if out.assistant_turns_run_together:
        # Every process of a launched job renders the same records: said once, by the main process.
        warn_for_job(log, "%d conversation(s) have two assistant turns in a row (first: %s), which the %s template "
                     "writes with no assistant header between them, straight after the first turn's "
                     "end-of-sentence token: the model never saw that layout, and the second turn trains text after "
                     "the end of a reply. Merge such turns into one, or put the user turn between them",
                     out.assistant_turns_run_together, out.first["assistant_turns_run_together"], template.name)


def tokenize_conversations(
    conversations: list[Conversation],
    template: ChatTemplate,
    tokenizer: Any,
    masking: str = "assistant",
    thinking: bool | None = None,
    max_len: int | None = None,
) -> TokenizedSplit:
    """Render every conversation to ``{"input_ids", "labels"}``.

    Examples with no supervised token are dropped (they would add nothing but compute); examples longer
    than ``max_len`` tokens are dropped rather than cut, since cutting would silently remove the EOS the
    model must learn (the count is reported; filter by length in data preparation to avoid it). A record
    the template cannot render (a tool turn for deepseek-llm, DSML tool arguments that are not a JSON
    object) is dropped and counted with the first one's origin and reason, rather than stopping the run
    with a message that names no record.
    """
    out = TokenizedSplit([], tools_not_rendered=unrendered_tools(conversations, template))
    assistant_turns_run_together(conversations, template, out)
    for conversation, rendered in _render_all(conversations, template, tokenizer, masking, thinking):
        if isinstance(rendered, DsftError):
            out.drop("template_cannot_render", f"{conversation.meta.get('origin', '?')}: {rendered}")
        elif rendered.num_supervised == 0:
            out.drop("no_supervised_tokens")
        elif max_len is not None and len(rendered.input_ids) > max_len:
            out.drop("longer_than_max_seq_len")
        else:
            out.examples.append(rendered.to_example())
            if _reasoning_left_out(conversation, rendered, masking):
                out.reasoning_not_rendered += 1
                out.first.setdefault("reasoning_not_rendered", str(conversation.meta.get("origin", "?")))
    if out.reasoning_not_rendered:
        warn_for_job(log, "%d conversation(s) have reasoning on a trained turn that the %s template does not render "
                     "(first: %s): the model is trained on those turns without it. %s %s",
                     out.reasoning_not_rendered, template.name, out.first["reasoning_not_rendered"],
                     template.reasoning_left_out_hint, REASONING_LEFT_OUT_HINT)
    return out


REASONING_LEFT_OUT_HINT = "Set data.reasoning=drop to train without reasoning on purpose"  # after the family's hint


def _reasoning_left_out(conversation: Conversation, rendered: Rendered, masking: str) -> bool:
    """Whether the reasoning of a trained assistant turn is missing from the supervised text."""
    reasonings = [conversation.messages[i].reasoning for i in trained_turns(conversation, masking)]
    reasonings = [r.strip() for r in reasonings if r and r.strip()]
    if not reasonings:
        return False
    supervised = "".join(text for text, sup in rendered.spans if sup)
    return any(reasoning not in supervised for reasoning in reasonings)


BATCH = 512  # conversations per batched tokenizer call


def _render_all(conversations: list[Conversation], template: ChatTemplate, tokenizer: Any, masking: str,
                thinking: bool | None) -> Iterator[tuple[Conversation, Rendered | DsftError]]:
    """``(conversation, rendered)`` in order, :data:`BATCH` at a time through the family's ``render_train_many``;
    a batch the template refuses is rendered one by one, each refusal yielded in place of its rendering."""
    for start in range(0, len(conversations), BATCH):
        batch = conversations[start : start + BATCH]
        try:
            yield from zip(batch, template.render_train_many(batch, tokenizer, masking=masking, thinking=thinking))
        except ConfigError:
            raise  # the template does not fit the tokenizer: no record would render
        except DsftError:
            for conversation in batch:
                try:
                    yield conversation, template.render_train(conversation, tokenizer, masking, thinking)
                except ConfigError:
                    raise
                except DsftError as exc:
                    yield conversation, exc
