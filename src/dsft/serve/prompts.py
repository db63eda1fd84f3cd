"""Requests -> prompt token ids, with the renderer training used, and the reasoning split of outputs.

The chat prompt is ``get_template(name).render_prompt(conversation, thinking=...)``: byte-identical to
what the model saw during training. Rendered text already carries BOS and the family's markers, so it
is tokenized without adding special tokens (no double BOS).
"""

from __future__ import annotations

from typing import Any

from dsft.data.conversation import Conversation, Message
from dsft.serve.openai_errors import ApiError
from dsft.serve.protocol import ChatMessageIn
from dsft.templates import get_template
from dsft.templates.tool_call_parsing import READERS, ToolCallReader


def conversation_from_messages(messages: list[ChatMessageIn], tools: list[dict[str, Any]] | None = None) -> Conversation:
    """OpenAI ``messages`` (and ``tools``) -> :class:`Conversation` (``developer`` is a system message;
    reasoning kept apart)."""
    converted = []
    for index, message in enumerate(messages):
        role = "system" if message.role == "developer" else message.role
        if role == "tool" and not message.text():
            raise ApiError(400, f"messages.{index}: a tool message needs content", f"messages.{index}.content")
        if message.role != "assistant" and message.content is None:  # missing, null, or sent as another field
            raise ApiError(400, f"messages.{index}.content: a {message.role} message needs content",
                           f"messages.{index}.content")
        converted.append(Message(
            role=role, content=message.text(), reasoning=message.reasoning_content or message.reasoning,
            tool_calls=message.tool_calls, name=message.name, tool_call_id=message.tool_call_id,
        ))
    if converted[-1].role == "assistant":
        raise ApiError(400, "the last message is from the assistant; end with a user (or tool) message", "messages")
    return Conversation(messages=converted, tools=tools)


def render_chat_prompt(template_name: str, tokenizer: Any, conversation: Conversation, thinking: bool | None) -> str:
    """The inference prompt of the training template (generation prompt included).

    Role orders the family cannot render faithfully are answered 400 naming the message (see
    :meth:`dsft.templates.spec.ChatTemplate.prompt_problems`); other conversations it cannot render raise
    :class:`DsftError` (also answered 400).
    """
    template = get_template(template_name, tokenizer)
    if conversation.tools and not template.renders_tool_definitions:
        # Dropping them silently would leave the model calling tools it was never shown.
        raise ApiError(400, f"tools: the {template_name} chat template does not render tool definitions (its "
                            "official template has no place for them); describe the tools in the system message, "
                            "as the model was trained, and send no tools", "tools")
    for index, reason in template.prompt_problems(conversation)[:1]:
        where = "messages" if index is None else f"messages.{index}"
        raise ApiError(400, f"{where}: {reason} (template {template_name})", where, "invalid_role_order")
    return template.render_prompt(conversation, thinking=thinking)


def tool_call_reader(template_name: str) -> ToolCallReader | None:
    """How the family's replies write tool calls (None: it writes none, or dsft cannot read its format)."""
    return READERS.get(get_template(template_name).tool_call_format)


def generation_starts_in_reasoning(template_name: str, prompt: str) -> bool:
    """Whether the output should be split into reasoning and content (vLLM's reasoning parsers).

    The family decides (:meth:`dsft.templates.spec.ChatTemplate.prompt_opens_think`, the rule eval
    uses too): R1 always reasons; hybrid families (V3.1+) when the prompt opened the block, i.e.
    thinking was requested; plain chat families never.
    """
    return get_template(template_name).prompt_opens_think(prompt)


def tokenize_prompt(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    """Token ids of ``text``; chat prompts pass ``add_special_tokens=False`` (the template placed BOS)."""
    ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    if not ids:
        raise ApiError(400, "the prompt is empty after tokenization", "prompt")
    return list(ids)
