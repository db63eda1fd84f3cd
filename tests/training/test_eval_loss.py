"""Validation loss is the mean over supervised tokens, whatever the eval micro-batch size.

Stock Trainer evaluation averages per-batch means (weighted by rows), so the same model and data
reported different losses at different batch sizes (measured on SmolLM2-135M: 4.08 at micro-batch 2,
3.96 at 4, token-weighted mean 3.82).
"""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, TrainingArguments

from dsft.training.collators import PackedCollator, pack_row
from dsft.training.trainer import DsftTrainer


def _examples() -> list[dict[str, list[int]]]:
    """Rows with very different numbers of supervised tokens (2 to 40)."""
    generator = torch.Generator().manual_seed(3)
    rows = []
    for length, supervised in ((12, 2), (50, 40), (20, 5), (44, 30), (16, 3), (30, 24)):
        ids = torch.randint(0, 600, (length,), generator=generator).tolist()
        labels = [-100] * (length - supervised) + ids[length - supervised:]
        rows.append(pack_row([{"input_ids": ids, "labels": labels}]))
    return rows


def _token_weighted_loss(model: torch.nn.Module, rows: list[dict[str, list[int]]]) -> float:
    """Independent: sum of next-token cross-entropy over every supervised token / their number."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor(row["labels"])[1:]
            logits = model(input_ids=ids).logits[0, :-1]
            total += float(torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
            count += int(labels.ne(-100).sum())
    return total / count


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_eval_loss_is_the_supervised_token_mean(tmp_path, batch_size: int) -> None:
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    rows = _examples()
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, disable_tqdm=True,
                             per_device_eval_batch_size=batch_size, remove_unused_columns=False)
    trainer = DsftTrainer(model=model, args=args, data_collator=PackedCollator(pad_id=0), eval_dataset=rows,
                          loss_chunk_size=7)
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(_token_weighted_loss(model, rows), abs=1e-5)
