"""The three training systems the benchmark compares, each run in its own process by ``worker.py``.

* ``dsft``: dsft defaults: BFD-packed rows of ``seq_len`` tokens (micro-batch ``micro_batch_size`` rows,
  default 1, as ``train.micro_batch_size``; accumulation chosen so a step holds about ``examples_per_step``
  examples, at least one micro-batch), chunked loss on supervised tokens only.
* ``trl``: TRL ``SFTTrainer`` with its defaults on the ``messages`` data (no packing, padding to the
  longest in the batch, loss on every token, gradient checkpointing on); batch ``examples_per_step``.
* ``trl-expert``: TRL ``SFTTrainer`` as a careful engineer configures it for speed on this data: the
  conversations as prompt/completion pairs with ``completion_only_loss`` (loss on the assistant turn and its
  EOS only, the tokens dsft supervises), ``packing=True`` with TRL's best-fit-decreasing strategy (which
  turns on its padding-free collator: one flattened row with restarting ``position_ids``, no padding),
  gradient checkpointing off, and TRL's own chunked fused lm_head (its default; it also computes entropy and
  top-1 accuracy for logging, which cannot be turned off). Micro-batch ``micro_batch_size`` packed rows
  (dsft's; its collator flattens them into one row), accumulation chosen like dsft's.
* ``seed``: the seeds' recipe: transformers ``Trainer``, every example padded to ``seq_len`` with EOS,
  ``labels = input_ids`` (prompt and padding included), micro-batch 1 x accumulation ``examples_per_step``.

Shared by all three: the same model, LoRA adapter (dsft's default ``lora`` section: all linear layers,
r=16), learning rate, number of optimizer steps, maximum length and precision (``--precision``: fp32 on CPU
and bf16 on GPU by default; bf16 is the frozen base's weights and autocast, as ``train.precision``),
and the Trainer's ``logging_nan_inf_filter`` off (dsft train's setting; on, it reads every micro-batch's
loss back to the host).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

from dsft.templates.base import IGNORE_INDEX
from dsft.training.bench.synthetic import VERBATIM_CHAT_TEMPLATE, supervised_count
from dsft.training.collators import make_collator, make_train_dataset
from dsft.training.guards import count_real_tokens
from dsft.training.lean_activations import use_lean_activations
from dsft.training.packing import pack_best_fit
from dsft.training.segment_attention import SEGMENT_ATTENTION, select_segment_attention
from dsft.training.trainer import DsftTrainer, apply_liger_kernels, compile_decoder_layers


class Built(NamedTuple):
    """A system ready to train: its trainer, and for the systems dsft accelerates, what was switched on."""

    trainer: Any
    accelerations: list[str] | None = None


@dataclass
class Meter(TrainerCallback):
    """Times the optimizer steps after the first (warm-up) and counts the tokens they trained on."""

    warmup_steps: int = 1
    start: float | None = None
    end: float | None = None
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    # Numbers, or 0-d tensors on the training device until the run ends (on_train_end reads them back once:
    # a read per micro-batch would make the host wait for the GPU after every backward).
    real_tokens: Any = 0
    padded_tokens: Any = 0
    supervised_tokens: Any = 0
    uncredited_rows: int = 0
    losses: list[float] = field(default_factory=list)

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.warmup_steps:
            self.start, self.cpu_start = self._now(), time.process_time()
        self.end, self.cpu_end = self._now(), time.process_time()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.real_tokens, self.padded_tokens, self.supervised_tokens = (
            int(n) for n in (self.real_tokens, self.padded_tokens, self.supervised_tokens))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))

    def count(self, global_step: int, real: Any, padded: int, supervised: Any) -> None:
        if global_step >= self.warmup_steps:  # micro-batches of the timed optimizer steps only
            self.real_tokens = self.real_tokens + real
            self.padded_tokens = self.padded_tokens + padded
            self.supervised_tokens = self.supervised_tokens + supervised


def dsft_counts(inputs: dict[str, Any]) -> tuple[Any, torch.Tensor]:
    """(real tokens, supervised targets) of one dsft micro-batch: real tokens exactly as training counts them
    (:func:`dsft.training.guards.count_real_tokens`: the collator's count), targets as the credit table counts
    them (position 0 of a row never is one), a 0-d tensor on the batch's device."""
    return count_real_tokens(inputs), inputs["labels"][:, 1:].ne(IGNORE_INDEX).sum()


def padding_free_counts(inputs: dict[str, Any]) -> tuple[int, torch.Tensor]:
    """(real tokens, supervised targets) of a padding-free batch: every position is a real token, and a label
    other than -100 is a target (the collator already masks each sequence's first position); the targets a
    0-d tensor on the batch's device."""
    labels = inputs["labels"]
    return labels.numel(), labels.ne(IGNORE_INDEX).sum()


def metered(trainer_cls: type, meter: Meter, credit: dict[tuple[int, ...], int] | str | None) -> type:
    """``trainer_cls`` counting each micro-batch into ``meter``.

    With a ``credit`` table (padded systems) a row earns the supervised tokens dsft's mask gives the same
    example, looked up by its unpadded ids; without it (dsft) the supervised tokens are the batch's own
    labels; with ``"padding_free"`` (trl-expert) too, counted on its flattened row.
    """

    class MeteredTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            # dsft and trl-expert are counted on the device (no read back per micro-batch, as in training);
            # the padded systems' rows are looked up in the credit table, on the host.
            if credit == "padding_free":
                real, supervised = padding_free_counts(inputs)
            elif credit is None:
                real, supervised = dsft_counts(inputs)
            else:
                ids = inputs["input_ids"].detach().cpu()
                mask = inputs["attention_mask"].detach().cpu().bool()
                real, supervised = int(mask.sum()), 0
                for row, row_mask in zip(ids, mask):
                    key = tuple(row[row_mask].tolist())
                    if key in credit:
                        supervised += credit[key]
                    else:
                        meter.uncredited_rows += 1
            meter.count(self.state.global_step, real, inputs["input_ids"].numel(), supervised)
            return super().training_step(model, inputs, num_items_in_batch)

    return MeteredTrainer


def bench_precision(precision: str, device: str) -> str:
    """``--precision`` for ``device``: ``auto`` is fp32 on CPU and bf16 on GPU; fp32 and bf16 stay as named."""
    if precision == "auto":
        return "fp32" if device == "cpu" else "bf16"
    return precision


def common_args(spec: dict[str, Any], device: str) -> dict[str, Any]:
    """TrainingArguments every system shares."""
    return {
        "output_dir": spec["work_dir"], "max_steps": spec["steps"] + 1, "learning_rate": spec["lr"],
        "lr_scheduler_type": "constant", "warmup_steps": 0, "logging_steps": 1, "save_strategy": "no",
        "report_to": [], "seed": spec["seed"], "disable_tqdm": True, "use_cpu": device == "cpu",
        "bf16": bench_precision(spec.get("precision", "auto"), device) == "bf16", "dataloader_num_workers": 0,
        # Off for every system, as dsft train sets it: on, the Trainer reads each micro-batch's loss back
        # (a host-device sync after every backward) to replace a NaN with the running mean.
        "logging_nan_inf_filter": False,
    }


def build_dsft(spec: dict[str, Any], model: Any, tokenizer: Any, examples: list[dict], meter: Meter) -> Built:
    train_cfg = SimpleNamespace(packing=True, max_seq_len=spec["seq_len"])
    dataset = make_train_dataset([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples],
                                 train_cfg, spec["seed"])
    if len(dataset) == 0:
        raise ValueError(f"every example is longer than seq_len={spec['seq_len']}")
    examples_per_row = (dataset.examples - dataset.dropped_overlong) / max(1, len(dataset))
    rows_per_micro_batch = spec.get("micro_batch_size", 1)
    accumulation = max(1, round(spec["examples_per_step"] / (examples_per_row * rows_per_micro_batch)))
    options = set(spec.get("dsft_options", ()))
    checkpointing = "gradient_checkpointing" in options or "offload_activations" in options
    if checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # LoRA: the frozen embeddings' output must carry a gradient
    args = TrainingArguments(
        per_device_train_batch_size=rows_per_micro_batch, gradient_accumulation_steps=accumulation,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        torch_compile="compile" in options, **common_args(spec, model.device.type),
    )
    select_segment_attention(model, packing=True)  # as dsft train does with attn_implementation: auto
    use_lean_activations(model)  # as dsft train does, Liger after it (train.liger); the worker says what ran
    accelerations = []
    if "liger" in options:
        if not apply_liger_kernels(model):
            raise ValueError("--dsft-option liger: Liger kernels need CUDA and the liger-kernel package")
        accelerations.append("liger")
    if "compile_layers" in options:  # as train.compile: layers
        accelerations.append(f"compile_layers x{compile_decoder_layers(model)}")
    collator = make_collator(train_cfg, tokenizer, model.config._attn_implementation)
    trainer_cls = metered(DsftTrainer, meter, None)
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator,
                          callbacks=[meter], loss_chunk_size=spec["loss_chunk_size"],
                          offload_activations="offload_activations" in options,
                          loss_dtype=spec.get("loss_dtype", "auto"))
    return Built(trainer, [model.config._attn_implementation, *accelerations])


def credit_table(examples: list[dict], seq_len: int) -> list[int]:
    """dsft's supervised-token count of each example at ``seq_len`` (what a padded system is credited)."""
    return [supervised_count(e["labels"], seq_len) for e in examples]


def build_trl(spec: dict[str, Any], model: Any, tokenizer: Any, examples: list[dict], meter: Meter) -> Built:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer  # optional: the bench / test extras install TRL

    tokenizer.chat_template = VERBATIM_CHAT_TEMPLATE
    dataset = Dataset.from_list([{"messages": e["messages"]} for e in examples])
    args = SFTConfig(max_length=spec["seq_len"], per_device_train_batch_size=spec["examples_per_step"],
                     gradient_accumulation_steps=1, **common_args(spec, model.device.type))
    credits = credit_table(examples, spec["seq_len"])
    credit: dict[tuple[int, ...], int] = {}
    trainer_cls = metered(SFTTrainer, meter, credit)
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          callbacks=[meter])
    # TRL tokenizes in order, one row per conversation; map its rows to the examples' credits.
    processed = trainer.train_dataset["input_ids"]
    if len(processed) != len(credits):
        raise RuntimeError(f"TRL kept {len(processed)} of {len(credits)} conversations; cannot credit rows")
    credit.update({tuple(ids): c for ids, c in zip(processed, credits)})
    return Built(trainer)


def build_trl_expert(spec: dict[str, Any], model: Any, tokenizer: Any, examples: list[dict], meter: Meter) -> Built:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer  # optional: the bench / test extras install TRL

    tokenizer.chat_template = VERBATIM_CHAT_TEMPLATE
    dataset = Dataset.from_list([{"prompt": e["messages"][:1], "completion": e["messages"][1:]} for e in examples])
    # Accumulation as dsft's: TRL packs best-fit decreasing too, so dsft's packer predicts its row count.
    lengths = [min(len(e["input_ids"]), spec["seq_len"]) for e in examples]
    rows = len(pack_best_fit(lengths, spec["seq_len"]))
    rows_per_micro_batch = spec.get("micro_batch_size", 1)
    examples_per_row = len(examples) / max(1, rows)
    accumulation = max(1, round(spec["examples_per_step"] / (examples_per_row * rows_per_micro_batch)))
    args = SFTConfig(
        max_length=spec["seq_len"], packing=True, packing_strategy="bfd", padding_free=True,
        completion_only_loss=True, gradient_checkpointing=False,
        per_device_train_batch_size=rows_per_micro_batch, gradient_accumulation_steps=accumulation,
        **common_args(spec, model.device.type),
    )
    trainer_cls = metered(SFTTrainer, meter, "padding_free")
    return Built(trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             callbacks=[meter]))


def build_trl_expert_varlen(spec: dict[str, Any], model: Any, tokenizer: Any, examples: list[dict],
                            meter: Meter) -> Built:
    """trl-expert with its attention on a varlen flash kernel where flash-attn is not installed: the packed
    row's examples found from TRL's restarting ``position_ids`` (as transformers' flash-attention path finds
    them) and attended on torch's varlen flash kernel, dsft's ``dsft_segments``. With flash-attn installed
    the model already runs ``flash_attention_2`` and this is trl-expert itself."""
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.config._attn_implementation = SEGMENT_ATTENTION
    return Built(build_trl_expert(spec, model, tokenizer, examples, meter).trainer,
                 [model.config._attn_implementation])


def build_seed(spec: dict[str, Any], model: Any, tokenizer: Any, examples: list[dict], meter: Meter) -> Built:
    seq_len, eos = spec["seq_len"], tokenizer.eos_token_id
    rows = []
    for e in examples:
        ids = e["input_ids"][:seq_len]
        padded = ids + [eos] * (seq_len - len(ids))  # pad = EOS
        rows.append({"input_ids": padded, "attention_mask": [1] * len(ids) + [0] * (seq_len - len(ids)),
                     "labels": list(padded)})  # labels = input_ids: prompt and padding trained on too
    credits = credit_table(examples, seq_len)
    credit = {tuple(e["input_ids"][:seq_len]): c for e, c in zip(examples, credits)}
    args = TrainingArguments(per_device_train_batch_size=1, gradient_accumulation_steps=spec["examples_per_step"],
                             **common_args(spec, model.device.type))
    trainer_cls = metered(Trainer, meter, credit)
    return Built(trainer_cls(model=model, args=args, train_dataset=rows, data_collator=default_data_collator,
                             callbacks=[meter]))


BUILDERS = {"dsft": build_dsft, "trl": build_trl, "trl-expert": build_trl_expert,
            "trl-expert-varlen": build_trl_expert_varlen, "seed": build_seed}


def body_and_head_parameters(model: Any) -> tuple[float, int]:
    """(active body parameters per token, lm_head parameters): embeddings are lookups, routed experts
    count by the share of experts each token uses."""
    config = model.config
    share = 1.0
    if getattr(config, "n_routed_experts", None):
        share = config.num_experts_per_tok / config.n_routed_experts
    body = 0.0
    head = model.get_output_embeddings().weight.numel()
    for name, parameter in model.named_parameters():
        if "embed_tokens" in name or "lm_head" in name:
            continue
        body += parameter.numel() * (share if ".experts." in name and "shared" not in name else 1.0)
    return body, head


def useful_flops(body: float, head: int, real_tokens: int, supervised_tokens: int, full: bool) -> float:
    """Matmul FLOPs of the work that matters: the body on real tokens, the lm_head on supervised ones.

    Per parameter and token: 2 forward + 2 for input gradients, + 2 for weight gradients when the weight
    trains (full fine-tuning); LoRA leaves the base weights frozen (their extra FLOPs are negligible).
    """
    factor = 6 if full else 4
    return factor * (body * real_tokens + head * supervised_tokens)


def summarize(meter: Meter, model: Any, peak_memory: int, full: bool) -> dict[str, Any]:
    seconds = (meter.end or 0.0) - (meter.start or 0.0)
    cpu_seconds = meter.cpu_end - meter.cpu_start
    body, head = body_and_head_parameters(model)
    flops = useful_flops(body, head, meter.real_tokens, meter.supervised_tokens, full)
    head_flops = useful_flops(0.0, head, meter.real_tokens, meter.supervised_tokens, full)
    return {
        "seconds": seconds,
        # CPU time of all the process's threads: a cross-check that a busy shared machine distorts less.
        "cpu_seconds": cpu_seconds,
        "supervised_tokens_per_cpu_s": meter.supervised_tokens / cpu_seconds if cpu_seconds > 0 else math.nan,
        "supervised_tokens": meter.supervised_tokens,
        "real_tokens": meter.real_tokens,
        "padded_tokens": meter.padded_tokens,
        "supervised_tokens_per_s": meter.supervised_tokens / seconds if seconds > 0 else math.nan,
        "tokens_per_s": meter.real_tokens / seconds if seconds > 0 else math.nan,
        "padded_tokens_per_s": meter.padded_tokens / seconds if seconds > 0 else math.nan,
        "useful_flops_per_s": flops / seconds if seconds > 0 else math.nan,
        "body_flops": flops - head_flops,
        "lm_head_flops": head_flops,
        "peak_memory_bytes": peak_memory,
        "final_loss": meter.losses[-1] if meter.losses else math.nan,
        "losses": list(meter.losses),
        "uncredited_rows": meter.uncredited_rows,
    }
