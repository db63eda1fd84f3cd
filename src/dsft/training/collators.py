"""Rows for the model: packed (padding-free, the default) or dynamically padded.

Packed rows are formed once, up front (:func:`make_train_dataset`): best-fit-decreasing packing of whole
examples into rows of ``train.max_seq_len`` tokens. The Trainer's sampler shuffles the rows each epoch.

Isolation between the examples of a row comes from ``position_ids`` alone: they restart at 0 for every
example, and no ``attention_mask`` is passed. transformers (5.x) then builds a block-causal mask for
sdpa/eager (``masking_utils.find_packed_sequence_indices``) -- but ONLY when there is no attention_mask
and no KV cache object; a model called with ``use_cache=True`` creates a cache and silently lets the
examples of a row attend to each other. :class:`dsft.training.trainer.DsftTrainer` always calls the
model with ``use_cache=False``. FlashAttention-2 only isolates flattened batches (batch size 1), so
with it the collator flattens the batch into one row and passes ``cu_seq_lens_*`` / ``max_length_*``.

Labels: the first token of every example is labelled -100 in a packed row. Its label is never a target
of its own example (the loss shifts labels by one), but after shifting it would become the target of the
*previous* example's last token. The tail of a row is padded with ``pad_id``, labels -100 and its own
restarting position_ids, so the padding forms a separate (ignored) segment.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from dsft.templates.base import IGNORE_INDEX
from dsft.training.packing import overlong_indices, pack_best_fit
from dsft.training.ranks import warn_for_job
from dsft.training.segment_attention import SEGMENT_ATTENTION

Example = dict[str, list[int]]
# Packed batches carry their number of real (non-padding) tokens: an int the model never sees, counted
# here because padding cannot be told from EOS by id, and a sequence-parallel shard cannot tell at all.
REAL_TOKENS_KEY = "num_real_tokens"

logger = logging.getLogger(__name__)


def pack_row(examples: Sequence[Example]) -> dict[str, list[int]]:
    """Concatenate whole examples into one row with restarting position_ids.

    >>> pack_row([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}])
    {'input_ids': [5, 6, 7, 8, 9], 'labels': [-100, 6, 7, -100, 9], 'position_ids': [0, 1, 2, 0, 1]}
    """
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for example in examples:
        ids = list(example["input_ids"])
        row["input_ids"] += ids
        # Position 0's label would be predicted by the previous example's last token after the shift.
        row["labels"] += [IGNORE_INDEX] + list(example["labels"][1:])
        row["position_ids"] += list(range(len(ids)))
    return row


class RowsDataset(Dataset):
    """A list of rows (packed rows or single examples) with what was dropped to build it."""

    def __init__(self, rows: list[dict[str, list[int]]], dropped_overlong: int = 0, examples: int = 0) -> None:
        self.rows = rows
        self.dropped_overlong = dropped_overlong
        self.examples = examples

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


def make_train_dataset(examples: Sequence[Example], train_cfg: Any, seed: int) -> RowsDataset:
    """Tokenized examples -> a dataset of rows for the Trainer.

    ``train_cfg.packing`` (default): BFD-packed rows of at most ``train_cfg.max_seq_len`` tokens, in an order
    shuffled with ``seed`` (the Trainer's sampler reshuffles training rows every epoch; evaluation keeps
    this order). Otherwise one example per row, padded per batch by :class:`PaddingCollator`.
    Examples longer than ``max_seq_len`` are dropped, never cut (cutting loses the supervised EOS);
    ``dataset.dropped_overlong`` counts them and a warning names the count.
    """
    max_len = int(train_cfg.max_seq_len)
    lengths = [len(e["input_ids"]) for e in examples]
    dropped = len(overlong_indices(lengths, max_len))
    if dropped:
        warn_for_job(logger, "%d of %d examples are longer than train.max_seq_len=%d tokens and were dropped",
                     dropped, len(examples), max_len)  # every process builds the same rows
    if train_cfg.packing:
        rows = [pack_row([examples[i] for i in row]) for row in pack_best_fit(lengths, max_len)]
    else:
        rows = [dict(e) for e, n in zip(examples, lengths) if 0 < n <= max_len]
    random.Random(seed).shuffle(rows)
    return RowsDataset(rows, dropped_overlong=dropped, examples=len(examples))


def _padded_width(lengths: Sequence[int], multiple: int) -> int:
    """The longest length rounded up to a multiple of ``multiple``."""
    return -(-max(lengths) // multiple) * multiple


def _as_row(feature: dict[str, Any]) -> dict[str, list[int]]:
    """Accept packed rows and plain examples alike (an example is a row of one)."""
    if "position_ids" in feature:
        return feature
    return pack_row([feature])


@dataclass
class PackedCollator:
    """Stack packed rows into ``{input_ids, labels, position_ids}`` [B, L] with NO attention_mask.

    Rows are padded to the longest row in the batch (a multiple of ``pad_to_multiple_of``). With
    ``flatten=True`` (FlashAttention-2) the batch becomes one [1, total] row plus ``cu_seq_lens_q/k``
    (int32 boundaries of every example) and ``max_length_q/k``, the kwargs transformers' varlen path reads.
    """

    pad_id: int
    flatten: bool = False
    pad_to_multiple_of: int = 1

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [_as_row(f) for f in features]
        if self.flatten:
            return self._flattened(rows)
        width = _padded_width([len(r["input_ids"]) for r in rows], self.pad_to_multiple_of)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.tensor(row["input_ids"])
            labels[i, :n] = torch.tensor(row["labels"])
            position_ids[i, :n] = torch.tensor(row["position_ids"])
            # The padding restarts at 0: a separate segment that no real token can attend to.
            position_ids[i, n:] = torch.arange(width - n)
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
                REAL_TOKENS_KEY: sum(len(r["input_ids"]) for r in rows)}

    def _flattened(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        input_ids = [t for r in rows for t in r["input_ids"]]
        labels = [t for r in rows for t in r["labels"]]
        position_ids = [t for r in rows for t in r["position_ids"]]
        starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(position_ids)]
        cu_seq_lens = torch.tensor(starts, dtype=torch.int32)
        longest = int((cu_seq_lens[1:] - cu_seq_lens[:-1]).max())
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([position_ids], dtype=torch.long),
            "cu_seq_lens_q": cu_seq_lens,
            "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": longest,
            "max_length_k": longest,
            REAL_TOKENS_KEY: len(input_ids),
        }


@dataclass
class PaddingCollator:
    """Dynamic padding: pad each batch to its longest example (never to max_seq_len), with attention_mask."""

    pad_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = _padded_width([len(f["input_ids"]) for f in features], self.pad_to_multiple_of)
        input_ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[i, :n] = torch.tensor(feature["input_ids"])
            labels[i, :n] = torch.tensor(feature["labels"])
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def pad_id_of(tokenizer: Any) -> int:
    """The id used to fill padding. Its value never matters (labels are -100 there), so EOS is a fine fallback."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def make_collator(train_cfg: Any, tokenizer: Any, attn_implementation: str | None = None) -> Any:
    """The collator for ``train_cfg``: :class:`PackedCollator` when packing (flattened for flash-attention),
    else :class:`PaddingCollator`. Pass the model's ``config._attn_implementation`` as ``attn_implementation``."""
    pad_id = pad_id_of(tokenizer)
    sequence_parallel = int(getattr(train_cfg, "sequence_parallel", 1))
    if sequence_parallel > 1:
        # Ulysses shards every tensor of the batch along the sequence and rebuilds attention from the
        # gathered position_ids: rows (one example each unless packing with flash-attention) with
        # position_ids, padded to a multiple of the SP degree, never flattened, no attention_mask.
        # DeepSpeed's dataloader adapter all-gathers every rank's rows, which gloo (CPU) only does for
        # equal shapes: there every row is padded to train.max_seq_len (a multiple of the SP degree).
        multiple = sequence_parallel if torch.cuda.is_available() else int(train_cfg.max_seq_len)
        return PackedCollator(pad_id=pad_id, pad_to_multiple_of=multiple)
    if train_cfg.packing:
        # flash-attn's varlen path and dsft's segment attention read the examples' offsets of one flat row.
        flatten = bool(attn_implementation and (attn_implementation.startswith("flash_attention")
                                                or attn_implementation == SEGMENT_ATTENTION))
        return PackedCollator(pad_id=pad_id, flatten=flatten)
    return PaddingCollator(pad_id=pad_id)
