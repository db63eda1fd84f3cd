"""Request fields of OpenAI's API and vLLM's that dsft's server does not act on, and which of them it may ignore.

A field is ignored only when ignoring it cannot change the reply: bookkeeping (``user``, ``metadata``,
``store``), scheduling (``service_tier``, ``priority``), a speed hint (``prediction``). Every other such field
asks for a different reply (``logit_bias``, ``response_format``, ``echo``, ``min_tokens``, vLLM's guided decoding,
...), so a value other than the one that asks for nothing is a 400 naming the field: a client that sent it must
not receive a reply made without it. Leaving the field out, or sending its neutral value (``logit_bias: {}``,
``echo: false``), is accepted.
"""

from __future__ import annotations

import json
from typing import Any

# Fields whose value cannot change the reply: accepted and ignored.
IGNORED_FIELDS = frozenset({
    "user", "store", "metadata", "service_tier", "priority", "request_id", "prediction", "cache_salt",
    # vLLM: how special tokens are joined when they are kept; dsft's replies never keep them.
    "spaces_between_special_tokens",
})

# Fields dsft does not act on, each with the values that ask for nothing (as leaving the field out does).
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "reasoning_effort": (None,),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "parallel_tool_calls": (None, True),
    "suffix": (None, ""),
    "echo": (None, False),
    "best_of": (None, 1),
    "use_beam_search": (None, False),
    "length_penalty": (None, 1.0),
    "min_tokens": (None, 0),
    "ignore_eos": (None, False),
    "stop_token_ids": (None, []),
    "bad_words": (None, []),
    "allowed_token_ids": (None,),
    "skip_special_tokens": (None, True),
    "include_stop_str_in_output": (None, False),
    "add_generation_prompt": (None, True),
    "continue_final_message": (None, False),
    "chat_template": (None,),
    "documents": (None,),
    "prompt_logprobs": (None,),
    "return_tokens_as_token_ids": (None, False),
    "truncate_prompt_tokens": (None,),
    "structured_outputs": (None,),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "guided_grammar": (None,),
}

# What to do instead, where dsft has a way.
_INSTEAD = {
    "functions": "send 'tools'",
    "function_call": "send 'tool_choice'",
    "reasoning_effort": "turn thinking on or off with chat_template_kwargs.thinking (hybrid templates)",
    "stop_token_ids": "send 'stop' strings",
}

KNOWN_UNREAD_FIELDS = IGNORED_FIELDS | NEUTRAL_VALUES.keys()


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    """Whether ``value`` is one of ``neutral``, JSON types kept apart (Python holds ``True == 1`` and ``0 == False``)."""
    if value is None or isinstance(value, bool):
        return any(value is n for n in neutral)
    return any(value == n and not isinstance(n, bool) for n in neutral)


def refused_field(body: dict[str, Any]) -> tuple[str, str] | None:
    """The first field of ``body`` dsft does not act on that asks for something, and why it is refused; or None.

    >>> refused_field({"user": "u1", "logit_bias": {}, "echo": False})
    >>> refused_field({"echo": True})
    ('echo', 'not supported by this server (it would be ignored, and the reply made without it); leave it out or send false')
    """
    for key, value in body.items():
        neutral = NEUTRAL_VALUES.get(key) if isinstance(key, str) else None
        if neutral is None or _is_neutral(value, neutral):
            continue
        accepted = " or ".join(json.dumps(n) for n in neutral if n is not None)
        hint = _INSTEAD.get(key)
        how = f"leave it out or send {accepted}" if accepted else "leave it out"
        return key, (f"not supported by this server (it would be ignored, and the reply made without it); {how}"
                     + (f"; instead, {hint}" if hint else ""))
    return None

