"""Preference / RL records -> the pre-tokenized examples TRL's trainers consume, through dsft's renderers.

Every side of a record is rendered by the family renderer exactly as SFT renders a trained last turn
(:meth:`render_train` with masking ``last``): the prompt is the unsupervised head of the render (the
inference prompt's exact tokens, ``<think>\\n`` included for R1), the completion its supervised tail
(reasoning in the family's format, answer, EOS). So:

* ``pair`` -> ``{"prompt_ids", "chosen_ids", "rejected_ids"}`` (DPO, ORPO): both sides are rendered in the
  *same* thinking mode (``template.thinking``, else thinking iff either side carries reasoning), so a
  hybrid family (V3.1, V4) never gives the two sides different prompts, and the prompt ids of both
  renders are checked to be identical;
* ``labeled`` -> ``{"prompt_ids", "completion_ids", "label"}`` (KTO);
* ``prompt`` -> ``{"prompt", "prompt_opens_think", "answer", "solution"}`` (GRPO): the rendered inference prompt text, which GRPO
  tokenizes without added special tokens (``grpo.GuardedGRPO``), so its ids equal the render's.

Records longer than ``max_len`` tokens (prompt + longest completion) are dropped, not cut (a cut
completion loses its EOS or its answer), and counted by reason as SFT examples are; a split has the SFT
split's shape (:class:`dsft.training.examples.TokenizedSplit`).
"""

from __future__ import annotations

from typing import Any

from dsft.data.control_tokens import control_token_pattern
from dsft.data.conversation import Message
from dsft.data.preference import PreferenceRecord, control_token_problems_of
from dsft.errors import DsftError
from dsft.training.examples import TokenizedSplit, assistant_turns_run_together, unrendered_tools


def render_completion(template: Any, tokenizer: Any, record: PreferenceRecord, completion: Message,
                      thinking: bool | None) -> tuple[list[int], list[int]]:
    """``(prompt_ids, completion_ids)``: one render of prompt + completion, split where supervision starts.

    The completion is the supervised run (through the EOS that ends the turn); what a template writes after
    that EOS (ChatML's newline) is never generated and is not part of either side.
    """
    rendered = template.render_train(record.conversation(completion), tokenizer, masking="last", thinking=thinking)
    mask = rendered.supervised
    if True not in mask:
        raise DsftError(f"{record.meta.get('origin', 'a record')}: the completion renders to no supervised token",
                        job_wide=True)  # every process renders the same records
    start = mask.index(True)
    end = len(mask) - mask[::-1].index(True)
    if not all(mask[start:end]):
        # Only the last turn is trained, so supervision is one run; anything else is a renderer bug.
        raise DsftError(f"template {template.name!r}: the trained completion is not one contiguous run of tokens",
                        job_wide=True)
    return rendered.input_ids[:start], rendered.input_ids[start:end]


def pair_thinking(record: PreferenceRecord, thinking: bool | None) -> bool | None:
    """The thinking mode both sides of a pair render in: the configured one, else thinking iff either reasons."""
    if thinking is not None:
        return thinking
    return any(bool(m.reasoning) for m in record.completions()) or None


def render_pair(template: Any, tokenizer: Any, record: PreferenceRecord, thinking: bool | None) -> dict[str, list[int]]:
    mode = pair_thinking(record, thinking)
    assert record.chosen is not None and record.rejected is not None
    prompt, chosen = render_completion(template, tokenizer, record, record.chosen, mode)
    prompt_r, rejected = render_completion(template, tokenizer, record, record.rejected, mode)
    if prompt != prompt_r:
        raise DsftError(
            f"{record.meta.get('origin', 'a pair')}: chosen and rejected render different prompts with template "
            f"{template.name!r}; set template.thinking to render both sides in one mode", job_wide=True,
        )
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected}


def render_labeled(template: Any, tokenizer: Any, record: PreferenceRecord, thinking: bool | None) -> dict[str, Any]:
    assert record.completion is not None
    prompt, completion = render_completion(template, tokenizer, record, record.completion,
                                           pair_thinking(record, thinking))
    return {"prompt_ids": prompt, "completion_ids": completion, "label": bool(record.label)}


def render_rl_prompt(template: Any, record: PreferenceRecord, thinking: bool | None) -> dict[str, Any]:
    """The inference prompt text (GRPO samples from it), whether the family says the reply starts inside a think
    block, and the references rewards compare against (TRL hands every column to the reward functions)."""
    text = template.render_prompt(record.conversation(), thinking=thinking)
    return {"prompt": text, "prompt_opens_think": bool(template.prompt_opens_think(text)),
            "answer": record.references.get("answer"), "solution": record.references.get("solution")}


def render_split(records: list[PreferenceRecord], template: Any, tokenizer: Any, thinking: bool | None,
                 max_len: int | None) -> TokenizedSplit:
    """Render every record of a split; over-long records are dropped and counted, as are records whose tool
    definitions the template does not render."""
    out = TokenizedSplit([], tools_not_rendered=unrendered_tools(records, template))
    assistant_turns_run_together([record.conversation() for record in records], template, out)  # in a prompt
    # Preparation rejects these already (given the tokenizer); a data.prepared_dir may come from elsewhere.
    pattern = control_token_pattern(tokenizer)
    for record in records:
        problems = control_token_problems_of(record, pattern)
        if problems:
            out.drop("control_token_in_text", f"{record.meta.get('origin', '?')}: {problems[0]}")
            continue
        if record.kind == "pair":
            example = render_pair(template, tokenizer, record, thinking)
            size = len(example["prompt_ids"]) + max(len(example["chosen_ids"]), len(example["rejected_ids"]))
        elif record.kind == "labeled":
            example = render_labeled(template, tokenizer, record, thinking)
            size = len(example["prompt_ids"]) + len(example["completion_ids"])
        else:
            example = render_rl_prompt(template, record, thinking)
            size = len(tokenizer.encode(example["prompt"], add_special_tokens=False))
        if max_len is not None and size > max_len:
            out.drop("longer_than_max_seq_len")
            continue
        out.examples.append(example)
    return out
