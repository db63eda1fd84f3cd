"""A stand-in model that "generates" a fixed text, so output parsing can be tested exactly.

It has the call signature the generation loop uses and answers every step with logits that make the
next token of its script certain (then EOS forever), whatever the prompt. Given a ``prompts`` list, it
records each batch's prompt token ids (padding left out), so a test can see what the server rendered.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from dsft.serve.serving_model import ServingModel


class ScriptedModel(torch.nn.Module):
    def __init__(self, script_ids: list[int], eos_id: int, vocab_size: int,
                 prompts: list[list[int]] | None = None) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the loop reads the device from a parameter
        self.script = [*script_ids, eos_id]
        self.vocab_size = vocab_size
        self.prompts = prompts

    def forward(self, input_ids: torch.Tensor, past_key_values: int | None = None,
                attention_mask: torch.Tensor | None = None, **_: Any) -> SimpleNamespace:
        step = 0 if past_key_values is None else past_key_values + 1
        if step == 0 and self.prompts is not None:
            for row, ids in enumerate(input_ids):
                self.prompts.append(ids[attention_mask[row].bool()].tolist() if attention_mask is not None else ids.tolist())
        logits = torch.full((input_ids.shape[0], 1, self.vocab_size), -1e4)
        logits[:, -1, self.script[min(step, len(self.script) - 1)]] = 0.0
        return SimpleNamespace(logits=logits, past_key_values=step)


def scripted_serving(tokenizer: Any, text: str, template_name: str,
                     prompts: list[list[int]] | None = None) -> ServingModel:
    """A :class:`ServingModel` whose model always answers ``text`` (then EOS), recording prompts in ``prompts``."""
    script = tokenizer(text, add_special_tokens=False).input_ids
    model = ScriptedModel(script, tokenizer.eos_token_id, len(tokenizer), prompts)
    return ServingModel(model=model, tokenizer=tokenizer, template_name=template_name,
                        eos_ids={tokenizer.eos_token_id}, max_model_len=4096)
