"""Separate a model output's reasoning from its answer, and summarise reasoning across outputs.

Scores are computed on the answer after ``</think>``, never on the chain of thought. The split follows
vLLM's ``deepseek_r1`` parser (:func:`dsft.templates.reasoning.split_reasoning`), applied only when the
output is in a think block: when it contains ``<think>`` or ``</think>``, or when the template family
says the reply starts inside one (:meth:`dsft.templates.spec.ChatTemplate.prompt_opens_think`: R1
prompts end with ``<think>\\n``, so the model writes ``reasoning</think>answer``), the rule serving uses too.
A think block opened again after the first ``</think>`` is removed from the answer as well. Any other
output is all answer, so a non-reasoning model (V3, DeepSeek-LLM) is not counted as "reasoning
without closing".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dsft.eval.text import count_tokens
from dsft.markers import END_THINK, THINK
from dsft.templates.reasoning import prompt_opens_think, split_reasoning

__all__ = ["ParsedOutput", "parse_output", "prompt_opens_think", "reasoning_stats"]

# What of a think block is left after the first </think>: another block (closed or running to the end)
# or a stray closing tag. The scored answer holds none of it.
_LATER_THINK = re.compile(f"{re.escape(THINK)}.*?(?:{re.escape(END_THINK)}|$)|{re.escape(END_THINK)}", re.S)


@dataclass(frozen=True)
class ParsedOutput:
    """One output split into reasoning and answer.

    ``reasoning`` is None when the output did not reason; ``answer`` is "" when it never closed its
    think block (``unclosed``) or said nothing after it.
    """

    reasoning: str | None
    answer: str
    unclosed: bool

    @property
    def reasoned(self) -> bool:
        """Whether the output holds any non-blank chain of thought."""
        return bool(self.reasoning and self.reasoning.strip())


def parse_output(text: str, prompt_opened_think: bool = False) -> ParsedOutput:
    """Split ``text`` into reasoning and answer.

    ``prompt_opened_think``: the prompt ended inside a think block (R1's ``<think>\\n`` generation
    prompt), so the output starts as reasoning even without a ``<think>`` tag.

    >>> parse_output("<think>\\n2+2=4\\n</think>\\n\\nThe answer is 4.")
    ParsedOutput(reasoning='\\n2+2=4\\n', answer='The answer is 4.', unclosed=False)
    >>> parse_output("still thinking", prompt_opened_think=True)
    ParsedOutput(reasoning='still thinking', answer='', unclosed=True)
    >>> parse_output("Paris.")
    ParsedOutput(reasoning=None, answer='Paris.', unclosed=False)

    The split is vLLM's (the reasoning is the first block); a think block or a stray ``</think>`` after
    it is chain of thought too and is removed from the answer:

    >>> parse_output("<think>a</think>Paris<think>b</think>").answer
    'Paris'
    """
    in_think = prompt_opened_think or THINK in text or END_THINK in text
    if not in_think:
        return ParsedOutput(None, text.strip(), False)
    reasoning, content = split_reasoning(text)
    return ParsedOutput(reasoning, _LATER_THINK.sub("", content or "").strip(), END_THINK not in text)


def reasoning_stats(outputs: Sequence[ParsedOutput], tokenizer: object | None = None) -> dict[str, float | None]:
    """``think_rate`` (share of outputs with non-blank reasoning), ``unclosed_think_rate`` (share whose
    think block never closed), ``mean_reasoning_tokens`` (mean over the outputs that reasoned; None when
    none did). Tokens are the tokenizer's when given, else a CJK character or a word each
    (:func:`dsft.eval.text.count_tokens`).

    >>> reasoning_stats([parse_output("<think>a b</think>x"), parse_output("y")])
    {'think_rate': 0.5, 'unclosed_think_rate': 0.0, 'mean_reasoning_tokens': 2.0}
    """
    if not outputs:
        return {"think_rate": None, "unclosed_think_rate": None, "mean_reasoning_tokens": None}
    reasoned = [o for o in outputs if o.reasoned]
    lengths = [count_tokens(o.reasoning or "", tokenizer) for o in reasoned]
    return {
        "think_rate": len(reasoned) / len(outputs),
        "unclosed_think_rate": sum(o.unclosed for o in outputs) / len(outputs),
        "mean_reasoning_tokens": sum(lengths) / len(lengths) if lengths else None,
    }
