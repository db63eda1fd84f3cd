"""IFD (instruction-following difficulty) of question-answer pairs, scored by the model being fine-tuned.

``IFD = loss(answer | question) / loss(answer alone)`` (Li et al., "From Quantity to Quality", the
"Cherry" data selection): the mean cross-entropy of the same answer tokens with and without the
conversation before them. Below 1 the question helps the model predict the answer; at or above 1 it
does not. It lives here, not in :mod:`dsft.data`, because it needs the model, its chat template and a
loss; the data pipeline receives :class:`IfdScorer` as a plain scoring function (see
:mod:`dsft.data.semantic` and docs/internals.md).

The conditioned sequence is the template's training render with only the final assistant turn supervised
(its reasoning, answer and closing EOS); the unconditioned sequence is BOS followed by exactly those
supervised tokens. Both are cut at ``max_tokens``, and both losses cover the same answer tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dsft.config import DsftConfig
from dsft.data.conversation import Conversation
from dsft.data.semantic import question_answer
from dsft.models.loading import load_model
from dsft.models.resolve import resolve_model


def _pairs(rendered: Any, bos: int | None, max_tokens: int) -> tuple[list[int], list[int], int] | None:
    """(conditioned ids, unconditioned ids, answer length) with the answer cut to fit both sequences."""
    ids, supervised = rendered.input_ids, rendered.supervised
    if True not in supervised:
        return None
    start = supervised.index(True)
    answer = ids[start:]
    prefix = [bos] if bos is not None else []
    # Without a BOS the first answer token cannot be predicted alone: leave it out of both losses.
    skip = 0 if prefix else 1
    keep = min(len(answer), max_tokens - start, max_tokens - len(prefix))
    if keep - skip < 1 or start == 0:
        return None
    return ids[:start + keep], prefix + answer[:keep], keep - skip


def _mean_losses(model: Any, sequences: list[list[int]], answer_lengths: list[int], pad: int) -> list[float]:
    """Mean next-token cross-entropy over the last ``answer_lengths[i]`` tokens of each sequence.

    Rows are left-padded so every answer ends at the last position: the model then computes logits for
    the last ``max(answer_lengths) + 1`` positions only (``logits_to_keep``), not the whole prompt, which
    at a 100k+ vocabulary is most of the work. Positions restart after the padding.
    """
    width = max(len(s) for s in sequences)
    device = next(model.parameters()).device
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence):] = torch.tensor(sequence)
        mask[row, width - len(sequence):] = 1
    keep = max(answer_lengths) + 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       logits_to_keep=keep).logits.float()
    losses = []
    for row, length in enumerate(answer_lengths):
        # logits[:, j] predicts token width - keep + j + 1; the answer is the last ``length`` tokens.
        predicted = logits[row, keep - 1 - length:keep - 1]
        targets = ids[row, width - length:].to(device)
        losses.append(float(torch.nn.functional.cross_entropy(predicted, targets)))
    return losses


def ifd_scores(
    model: Any, tokenizer: Any, template: Any, conversations: Sequence[Conversation],
    max_tokens: int = 1024, batch_size: int = 8,
) -> list[float | None]:
    """IFD of each conversation's final answer (None: no question, or nothing left to score)."""
    bos = tokenizer.bos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    jobs: list[tuple[int, list[int], list[int], int]] = []
    for index, conversation in enumerate(conversations):
        if question_answer(conversation) is None:
            continue
        pair = _pairs(template.render_train(conversation, tokenizer, masking="last"), bos, max_tokens)
        if pair is not None:
            jobs.append((index, *pair))
    scores: list[float | None] = [None] * len(conversations)
    jobs.sort(key=lambda job: len(job[1]))  # similar lengths per batch: less padding
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        lengths = [job[3] for job in batch]
        conditioned = _mean_losses(model, [job[1] for job in batch], lengths, pad)
        alone = _mean_losses(model, [job[2] for job in batch], lengths, pad)
        for job, given, unconditioned in zip(batch, conditioned, alone):
            scores[job[0]] = given / max(unconditioned, 1e-9)
    return scores


class IfdScorer:
    """IFD with ``model.name_or_path`` rendered by ``template``; the model loads on the first call, not before."""

    def __init__(self, cfg: DsftConfig, tokenizer: Any, template: Any) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.template = template
        self._model: Any = None

    def __call__(self, conversations: Sequence[Conversation]) -> list[float | None]:
        if self._model is None:
            model_cfg = self.cfg.model
            path = resolve_model(model_cfg.name_or_path, model_cfg.cache_dir, model_cfg.revision)
            self._model = load_model(path, model_cfg.dtype, trust_remote_code=model_cfg.trust_remote_code)
        semantic = self.cfg.data.clean.semantic
        return ifd_scores(self._model, self.tokenizer, self.template, conversations,
                          semantic.ifd_max_tokens, semantic.ifd_batch_size)
