"""The benchmark's learning check: every system's loss on the same held-out conversations after its timed steps.

A speed ratio says nothing if one system learns less per step. Each system's last training loss cannot tell:
each packs and orders the conversations its own way, so its last step holds other conversations than another
system's last step (on one H200, 12 steps of a 7B shape: dsft 11.58, trl-expert-varlen 11.36, the same in
three repeats, with no way to say whether the rows or the training differ). So the runner draws
:data:`HELD_OUT_CONVERSATIONS` more conversations with another seed, none of them trained on, and every
system's worker measures the same loss on them with the same function once its steps are done: one forward
per conversation (no packing, no gradient), the body in the precision the system trained in, the lm_head and
cross-entropy in fp32 over dsft's supervised targets. Every system starts from the same weights (one seed, one
LoRA initialisation), so equal held-out losses mean equal learning.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dsft.training.loss import select_supervised
from dsft.training.trainer import forward_hidden_states, unwrap_causal_lm

HELD_OUT_CONVERSATIONS = 8
HELD_OUT_SEED_OFFSET = 1_000_003  # the held-out draw's seed: the benchmark's seed plus this


def held_out_loss(model: torch.nn.Module, examples: list[dict[str, Any]], bf16: bool, chunk_size: int = 256) -> float:
    """Mean next-token cross-entropy over the supervised targets of ``examples`` (each with ``input_ids`` and
    unshifted ``labels``, -100 where unsupervised), one conversation per forward, under bf16 autocast when
    ``bf16``; the lm_head and the loss in fp32, ``chunk_size`` positions at a time (no full-vocabulary logits
    of a whole conversation). The model is put back in the mode it was in."""
    causal_lm = unwrap_causal_lm(model)
    lm_head = causal_lm.get_output_embeddings()
    device = lm_head.weight.device
    weight = lm_head.weight.detach().float()
    bias = None if getattr(lm_head, "bias", None) is None else lm_head.bias.detach().float()
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    try:
        with torch.no_grad():
            for example in examples:
                ids = torch.tensor([example["input_ids"]], device=device)
                inputs = {"input_ids": ids, "position_ids": torch.arange(ids.shape[1], device=device)[None]}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    hidden, _ = forward_hidden_states(model, inputs)
                rows, targets = select_supervised(hidden, torch.tensor([example["labels"]], device=device))
                for start in range(0, targets.numel(), chunk_size):
                    logits = F.linear(rows[start:start + chunk_size].float(), weight, bias)
                    total += F.cross_entropy(logits, targets[start:start + chunk_size], reduction="sum").double()
                count += targets.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the held-out conversations have no supervised targets")
    return float(total) / count
