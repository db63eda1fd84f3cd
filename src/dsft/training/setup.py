"""The pieces a run is built from: template, data splits, model (+ adapter), TrainingArguments."""

from __future__ import annotations

import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import torch

from dsft.config import DsftConfig
from dsft.data import LOGGER as DATA_LOGGER
from dsft.data.pipeline import prepare
from dsft.data.prepared_folder import load_prepared
from dsft.data.report import rejection_notice
from dsft.disk import replaced_atomically
from dsft.dtype_names import PRECISION_DTYPES
from dsft.errors import ConfigError
from dsft.models.loading import align_special_tokens, load_model
from dsft.models.lora import apply_lora, build_lora_config
from dsft.templates import detect_template, get_template
from dsft.training.distributed import (
    apply_zero3_leaf_modules,
    distributed_training_args,
    init_deepspeed_comm,
    shards_parameters,
)
from dsft.training.environment import check_qlora, resolve_precision
from dsft.training.environment import environment_problems  # noqa: F401  (re-exported: setup's checks)
from dsft.training.examples import TokenizedSplit, tokenize_conversations
from dsft.training.ifd import IfdScorer
from dsft.training.lean_activations import use_lean_activations
from dsft.training.partitioned_loading import partitioned_loading
from dsft.training.segment_attention import select_segment_attention
from dsft.training.preflight import evaluation_problems
from dsft.training.ranks import is_main_process, warn_for_job, warn_for_node, warnings_for_job
from dsft.training.rundir import RunDir
from dsft.training.trainer import DsftTrainingArguments, apply_liger_kernels, compile_decoder_layers

log = logging.getLogger(__name__)

# train.optimizer -> TrainingArguments.optim
OPTIMIZERS = {"adamw_torch": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "adafactor": "adafactor"}


def resolve_template(cfg: DsftConfig, model_dir: Path, tokenizer: Any) -> tuple[str, Any]:
    """``template.name`` or, when ``auto``, the family detected from the model's config and tokenizer."""
    name = cfg.template.name if cfg.template.name != "auto" else detect_template(model_dir)
    return name, get_template(name, tokenizer)


def load_splits(cfg: DsftConfig, tokenizer: Any, template: Any, run_dir: Path,
                cache: dict[Any, Any] | None = None) -> dict[str, TokenizedSplit]:
    """Prepare (or reuse) the data, then render train/val with the template into tokenized examples.

    ``cache`` (a dict the caller keeps, e.g. across a sweep's trials) holds tokenized splits of a prepared
    directory by everything that changes them, so runs that share data and rendering tokenize once.
    """
    key = None
    if cache is not None and cfg.data.prepared_dir:
        key = (str(Path(cfg.data.prepared_dir).resolve()), getattr(tokenizer, "name_or_path", ""),
               type(template).__name__, template.chat_template, cfg.template.masking, cfg.template.thinking,
               cfg.train.max_seq_len)
        if key in cache:
            report, splits = cache[key]
            write_data_report(run_dir, report)
            return splits
    if cfg.data.prepared_dir:
        prepared = load_prepared(cfg.data.prepared_dir)
    elif cfg.data.train:
        scorer = IfdScorer(cfg, tokenizer, template) if cfg.data.clean.semantic.ifd else None
        # Every process of a launched job prepares the same data: its warnings are the job's, said once, and
        # its histograms (matplotlib: about a second of CPU) are drawn once, by the main process.
        with warnings_for_job(DATA_LOGGER):  # the readers' own (a file's comment lines), not only prepare's
            prepared = prepare(cfg, tokenizer, run_dir / "data", ifd_scorer=scorer, warn=partial(warn_for_job, log),
                               draw_histograms=is_main_process())
        if notice := rejection_notice(prepared.report, run_dir / "data"):  # said, not only in the report
            warn_for_job(log, notice)  # every process prepared the same data
    else:
        raise ConfigError("data.train: no training data; list files in data.train or set data.prepared_dir")
    write_data_report(run_dir, prepared.report)
    thinking = cfg.template.thinking
    splits = {
        name: tokenize_conversations(
            prepared.splits.get(name, []), template, tokenizer, masking=cfg.template.masking,
            thinking=thinking, max_len=cfg.train.max_seq_len,
        )
        for name in ("train", "val")
    }
    if key is not None:
        cache[key] = (prepared.report, splits)  # type: ignore[index]
    return splits


def write_data_report(run_dir: Path, report: dict[str, Any]) -> None:
    # Every process of a launched job writes it, and reads it back (mixed_sources): never half-written.
    with replaced_atomically(run_dir / "data_report.json") as handle:
        handle.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def mixed_sources(run_dir: Path) -> list[dict[str, Any]]:
    """What ``data.mix`` drew into the train split (path, ratio, records drawn), from the run's data report;
    also for a prepared directory made with ``data.mix``."""
    path = run_dir / "data_report.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return list(report.get("mix") or [])


def build_model(cfg: DsftConfig, model_dir: Path, tokenizer: Any, config_overrides: dict[str, Any] | None = None,
                adapter: bool = True) -> Any:
    """Load the base model for training and wrap it with LoRA when the method asks for it.

    ``adapter=False`` stops before the LoRA wrap (TRL's trainers wrap the model themselves, see
    :mod:`dsft.training.objectives`).

    Full fine-tunes keep fp32 master weights (bf16 autocast on GPU); LoRA/QLoRA load the frozen base in
    the training precision and keep adapter weights in fp32 (peft's default). ``config_overrides`` (from
    :func:`dsft.models.dropout.dropout_overrides`) replace model-config attributes before the modules are built.

    Under DeepSpeed ZeRO-3 (LoRA and full) each rank builds only its partition of the base weights
    (:mod:`dsft.training.partitioned_loading`), in the dtype DeepSpeed trains them in.
    """
    method = cfg.train.method
    if method == "qlora":
        check_qlora()
    precision = resolve_precision(cfg.train.precision)
    dtype = cfg.model.dtype
    if dtype == "auto":
        dtype = "float32" if method == "full" or precision == "fp32" else PRECISION_DTYPES[precision]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    # Under ZeRO-3 each rank builds only its partition of the weights, the LoRA wrap included.
    with partitioned_loading(cfg.train, world_size, method):
        return _build_model(cfg, model_dir, tokenizer, config_overrides, adapter, dtype, world_size)


def _build_model(cfg: DsftConfig, model_dir: Path, tokenizer: Any, config_overrides: dict[str, Any] | None,
                 adapter: bool, dtype: str, world_size: int) -> Any:
    """:func:`build_model` once the load is set up (partitioned or not)."""
    method = cfg.train.method
    # ZeRO-3 / FSDP partition the 4-bit weights only when they are stored in the dtype of the rest of the model.
    model = load_model(
        model_dir, dtype=dtype, attn_implementation=cfg.model.attn_implementation,
        quantization="4bit" if method == "qlora" else None, trust_remote_code=cfg.model.trust_remote_code,
        config_overrides=config_overrides, sharded=method == "qlora" and shards_parameters(cfg.train, world_size),
    )
    align_special_tokens(model, tokenizer)  # e.g. R1-Distill-Qwen's config BOS is wrong
    # A KV cache object disables the packed block-causal mask in sdpa/eager (see training/collators.py).
    model.config.use_cache = False
    # Packed rows without flash-attn: attention within each example only, on sdpa's fast kernels.
    select_segment_attention(model, cfg.train.packing, cfg.model.attn_implementation)
    # Exact blocks that save fewer activations for backward (each falls back to its module where it cannot).
    use_lean_activations(model)
    if cfg.train.liger:
        if not apply_liger_kernels(model):
            warn_for_node(log, "train.liger: Liger kernels need CUDA and the liger-kernel package; "
                          "training without them")
    if cfg.train.compile == "layers":  # each decoder layer compiled on its own, at its first forward
        compile_decoder_layers(model)
    # Under ZeRO-3 each MoE block is gathered as one unit (its experts are used together).
    apply_zero3_leaf_modules(model, cfg.train, world_size)
    if method == "full":
        return model
    from peft import prepare_model_for_kbit_training

    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
    if not adapter:
        return model
    model = apply_lora(model, cfg.lora)
    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def build_training_arguments(cfg: DsftConfig, run_dir: Path, has_eval: bool, model: Any) -> Any:
    """TrainingArguments from the typed config (one place; the config's names are the user's names)."""

    t, e = cfg.train, cfg.eval
    precision = resolve_precision(t.precision)
    # With validation data a run evaluates every eval.steps steps, or at every epoch end when it is 0.
    evaluating = has_eval
    per_epoch = e.steps == 0
    keep_best = evaluating and e.load_best
    problems = evaluation_problems(cfg, has_eval)  # preflight checked the same with the data still unread
    if problems:
        raise ConfigError(problems[0], problems[1:])
    kwargs: dict[str, Any] = {}
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 or t.distributed in ("fsdp", "deepspeed") or t.sequence_parallel > 1:
        kwargs.update(distributed_training_args(t, model.config, run_dir, world_size))
    args = DsftTrainingArguments(
        output_dir=str(RunDir(run_dir).checkpoint_root),
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        learning_rate=t.lr,
        lr_scheduler_type=t.lr_scheduler if t.lr_scheduler != "constant" else "constant_with_warmup",
        lr_scheduler_kwargs={"num_cycles": t.restart_cycles} if t.lr_scheduler == "cosine_with_restarts" else None,
        optim=OPTIMIZERS[t.optimizer],
        adam_beta1=t.adam_betas[0],
        adam_beta2=t.adam_betas[1],
        adam_epsilon=t.adam_epsilon,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        torch_compile=t.compile is True,  # the whole model; "layers" is compiled in build_model
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        # The Trainer's filter reads every micro-batch's loss back to replace a NaN with the running mean; the
        # run guards stop on a non-finite loss before the optimizer step instead, reading the step's losses
        # back once (a read per micro-batch stalls a GPU's queue after every backward).
        logging_nan_inf_filter=False,
        # Restoring the best checkpoint needs one at every evaluation: per-epoch evaluation saves per epoch.
        save_strategy="epoch" if keep_best and per_epoch else "steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy=("epoch" if per_epoch else "steps") if evaluating else "no",
        eval_steps=e.steps if evaluating and not per_epoch else None,
        eval_on_start=evaluating,
        load_best_model_at_end=keep_best,
        # Set whenever the run evaluates: the best checkpoint is tracked (run.json) and early stopping reads it.
        metric_for_best_model=e.metric_key() if evaluating else None,
        greater_is_better=e.higher_is_better() if evaluating else None,
        # dsft writes metrics.jsonl and TensorBoard itself (MetricsCallback); other trackers go through
        # transformers' integrations.
        report_to=[name for name in t.report_to if name != "tensorboard"] or "none",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=t.num_workers,
        use_cache=False,
        **kwargs,
    )
    if args.deepspeed:
        init_deepspeed_comm()
    return args
