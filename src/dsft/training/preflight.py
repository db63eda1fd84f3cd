"""Training checks that need neither data nor model weights: precision, method, strategy and world size,
sequence parallelism against the architecture, sizes against the model's config (:mod:`dsft.training.model_limits`),
and the evaluation schedule.

They run in a second, before anything heavy loads (``dsft config show``, ``dsft train``, ``dsft launch``
call them through :func:`dsft.plan.preflight.preflight`), and again where the training recipe uses the
setting, so a library caller gets the same refusal. Each problem names its key.

This module stays light to import (no torch, no transformers): it is on the path of ``dsft config show``.
"""

from __future__ import annotations

import importlib.util
import os
from types import SimpleNamespace
from typing import Any

from dsft.config import DsftConfig, LoraConfig
from dsft.data.split import may_have_validation_data
from dsft.errors import DsftError
from dsft.models.resolve import peek_model_config
from dsft.training.attention_choice import SEGMENT_ATTENTION, uses_segment_attention
from dsft.training.distributed import (
    FSDP_NEEDS_CUDA,
    check_sequence_parallel,
    resolve_strategy,
    unapplied_settings_notice,
    zero_optimization,
)
from dsft.training.environment import Environment, check_qlora, environment_problems
from dsft.training.model_limits import model_size_problems
from dsft.training.objective_checks import group_size_problems
from dsft.training.objective_settings import settings_read_by, unread_objective_settings

# What a run logs at every evaluation (MetricsCallback adds the perplexity), so eval.metric may name them.
TRAINING_EVAL_METRICS = ("eval_loss", "eval_perplexity")


def unused_lora_notice(cfg: DsftConfig) -> str | None:
    """One line naming the ``lora.*`` keys a ``train.method=full`` run does not apply; None when there are none.

    Compared with the defaults (not "was the key written"): a saved config.yaml lists every key. A LoRA config
    switched with ``--set train.method=full`` keeps its lora section, and is told that it is not used.

    >>> unused_lora_notice(DsftConfig.model_validate({"train": {"method": "full"}, "lora": {"r": 8}}))
    'lora.r=8: not applied; train.method=full trains every weight, with no adapter (set train.method=lora or qlora to use it, or remove the key)'
    """
    if cfg.train.method != "full":
        return None
    defaults = LoraConfig()
    changed = [f"lora.{key}={_setting(getattr(cfg.lora, key))}" for key in LoraConfig.model_fields
               if getattr(cfg.lora, key) != getattr(defaults, key)]
    if not changed:
        return None
    them = "them, or remove the keys" if len(changed) > 1 else "it, or remove the key"
    return (f"{', '.join(changed)}: not applied; train.method=full trains every weight, with no adapter "
            f"(set train.method=lora or qlora to use {them})")


def unused_cycles_notice(cfg: DsftConfig) -> str | None:
    """One line when ``train.lr_cycles`` is set and the scheduler does not read it; None otherwise. Another value
    is refused by the config; this one (the default of ``cosine_with_restarts``) is what every config saved before
    the key could be unset recorded, so it is read, and said.

    >>> unused_cycles_notice(DsftConfig.model_validate({"train": {"lr_cycles": 5}}))
    'train.lr_cycles=5: not applied; train.lr_scheduler=cosine does not restart (set train.lr_scheduler=cosine_with_restarts to use it, or remove the key)'
    """
    t = cfg.train
    if t.lr_cycles is None or t.lr_scheduler == "cosine_with_restarts":
        return None
    return (f"train.lr_cycles={t.lr_cycles}: not applied; train.lr_scheduler={t.lr_scheduler} does not restart "
            "(set train.lr_scheduler=cosine_with_restarts to use it, or remove the key)")


def unused_min_delta_notice(cfg: DsftConfig) -> str | None:
    """One line when ``eval.early_stopping_min_delta`` is set and early stopping is off (no patience); None
    otherwise.

    >>> unused_min_delta_notice(DsftConfig.model_validate({"eval": {"early_stopping_min_delta": 0.001}}))
    'eval.early_stopping_min_delta=0.001: not applied; early stopping is off, eval.early_stopping_patience=0 (set it to the evaluations without improvement to wait, e.g. 3, to use it, or remove the key)'
    """
    e = cfg.eval
    if not e.early_stopping_min_delta or e.early_stopping_patience:
        return None
    return (f"eval.early_stopping_min_delta={e.early_stopping_min_delta}: not applied; early stopping is off, "
            "eval.early_stopping_patience=0 (set it to the evaluations without improvement to wait, e.g. 3, to use "
            "it, or remove the key)")


def unused_objective_notice(cfg: DsftConfig) -> str | None:
    """One line naming the ``preference.*`` / ``grpo.*`` settings ``train.objective`` does not read, and which
    objectives do (:mod:`dsft.training.objective_settings` owns that); None when there are none.

    A DPO config switched with ``--set train.objective=sft`` keeps its preference section, and is told.

    >>> unused_objective_notice(DsftConfig.model_validate({"preference": {"beta": 0.2}}))
    'preference.beta=0.2 (read by dpo, kto, orpo): not applied; train.objective=sft does not read it (set train.objective to one that does to use it, or remove the key)'
    """
    unread = unread_objective_settings(cfg)
    if not unread:
        return None
    groups: dict[tuple[str, ...], list[str]] = {}  # the objectives that read them -> settings, in config order
    for name, value in unread:
        groups.setdefault(tuple(settings_read_by(*name.split("."))), []).append(f"{name}={_setting(value)}")
    listed = ", ".join(f"{', '.join(settings)} (read by {', '.join(readers)})" for readers, settings in groups.items())
    it, key = ("them", "keys") if len(unread) > 1 else ("it", "key")
    return (f"{listed}: not applied; train.objective={cfg.train.objective} does not read {it} (set train.objective "
            f"to one that does to use {it}, or remove the {key})")


def _setting(value: Any) -> str:
    """A value as ``--set`` takes it: ``[q_proj, v_proj]``, ``true``, ``8``; a list of entries by their names
    (``[accuracy, length]``)."""
    if isinstance(value, list):
        return "[" + ", ".join(str(getattr(v, "name", v)) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_notices(cfg: DsftConfig, world_size: int, cuda: bool | None = None,
                   deepspeed: bool | None = None) -> list[str]:
    """The settings ``cfg`` asks for that a run with ``world_size`` processes will not apply, one line each: a
    run says them once, before anything is read (a setting asked for and not applied is no secret), and
    ``dsft config show`` / ``dsft launch`` say them too. ``cuda`` and ``deepspeed`` describe the machines the run
    will use (default: this one)."""
    notices = (unapplied_settings_notice(cfg.train, world_size, cuda, deepspeed), unused_lora_notice(cfg),
               unused_objective_notice(cfg), unused_cycles_notice(cfg),
               unused_min_delta_notice(cfg))
    return [notice for notice in notices if notice]


def uses_distributed_setup(cfg: DsftConfig, world_size: int) -> bool:
    """Whether training builds DDP/FSDP/DeepSpeed settings (several processes, or asked for explicitly)."""
    t = cfg.train
    return world_size > 1 or t.distributed in ("fsdp", "deepspeed") or t.sequence_parallel > 1


def _collect(problems: list[str], check: Any, *args: Any) -> None:
    try:
        check(*args)
    except DsftError as exc:
        problems.append(str(exc))


def _strategy_problems(cfg: DsftConfig, env: Environment, problems: list[str]) -> None:
    t = cfg.train
    if env.world_size is not None and not uses_distributed_setup(cfg, env.world_size):
        return  # one process and no strategy asked for: these settings are not used
    strategy = t.distributed
    if strategy == "auto":
        if env.world_size is None:
            return  # auto is resolved once the number of processes is known
        try:
            # The machines the run will use: a launch script's GPU cluster is not this machine.
            strategy = resolve_strategy(t, env.world_size, cuda=env.has_cuda(), deepspeed=not env.lacks("deepspeed"))
        except DsftError as exc:
            problems.append(str(exc))
            return
    if strategy == "deepspeed" and env.lacks("deepspeed"):
        problems.append("train.distributed=deepspeed needs DeepSpeed: pip install deepspeed (or dsft[distributed])")
    if t.offload != "none" and strategy == "ddp":
        problems.append(f"train.offload={t.offload}: offload needs train.distributed=deepspeed or fsdp")
    if strategy == "deepspeed":
        _collect(problems, zero_optimization, t)
    if strategy == "fsdp":
        if not env.has_cuda():
            problems.append(FSDP_NEEDS_CUDA)
        if t.offload == "optimizer":
            problems.append("train.offload=optimizer: FSDP offloads parameters and gradients together; "
                            "use train.offload=optimizer+param with fsdp, or train.distributed=deepspeed")
    if t.splits_sequences() and strategy != "deepspeed":
        problems.append(f"train.sequence_parallel={t.sequence_parallel}: needs train.distributed=deepspeed")


def _attention(cfg: DsftConfig, env: Environment) -> str | None:
    """The attention kernel the model will train with; None where that depends on the target machine."""
    chosen = cfg.model.attn_implementation
    if chosen != "auto":
        return chosen
    if not env.inspect_packages:
        return None
    flash = env.has_cuda() and importlib.util.find_spec("flash_attn") is not None
    loaded = "flash_attention_2" if flash else "sdpa"
    return SEGMENT_ATTENTION if uses_segment_attention(cfg.train.packing, chosen, loaded) else loaded


def _sequence_parallel_problems(cfg: DsftConfig, env: Environment, problems: list[str]) -> None:
    sp = cfg.train.sequence_parallel
    if not cfg.train.splits_sequences():  # off, or refused by the objective (which says so alone)
        return
    values = peek_model_config(cfg.model.name_or_path)
    model_config = SimpleNamespace(**values) if values else None
    if model_config is not None and getattr(model_config, "kv_lora_rank", None):
        model_config.qk_head_dim = (getattr(model_config, "qk_nope_head_dim", 0) or 0) + \
            (getattr(model_config, "qk_rope_head_dim", 0) or 0)
    _collect(problems, check_sequence_parallel, cfg.train, sp, env.world_size, model_config, _attention(cfg, env))


# Tokens one forward may hold: the attention kernels index a micro-batch's packed examples by int32 offsets into
# it (flash-attn's cu_seqlens, dsft's segment attention).
MAX_TOKENS_PER_FORWARD = 2**31 - 1


def tokens_per_forward_problems(cfg: DsftConfig) -> list[str]:
    """``train.micro_batch_size`` rows of ``train.max_seq_len`` tokens beyond :data:`MAX_TOKENS_PER_FORWARD`.

    ``micro_batch_size=99999999999`` passed, and died in transformers' evaluation loop allocating 400 GB (it
    repeats each batch's loss once per row); 2**63 in the data loader's batching, both after the model loaded.

    >>> print(*tokens_per_forward_problems(DsftConfig.model_validate({"train": {"micro_batch_size": 2**27}})))
    train.micro_batch_size=134217728: with train.max_seq_len=2048, a forward of 274,877,906,944 tokens; attention kernels index a forward's tokens with int32 (at most 2,147,483,647): lower train.micro_batch_size to at most 1048575 (raise train.grad_accum for a larger batch)
    """
    t = cfg.train
    tokens = t.micro_batch_size * t.max_seq_len
    if tokens <= MAX_TOKENS_PER_FORWARD:
        return []
    return [f"train.micro_batch_size={t.micro_batch_size}: with train.max_seq_len={t.max_seq_len}, a forward of "
            f"{tokens:,} tokens; attention kernels index a forward's tokens with int32 (at most "
            f"{MAX_TOKENS_PER_FORWARD:,}): lower train.micro_batch_size to at most "
            f"{MAX_TOKENS_PER_FORWARD // t.max_seq_len} (raise train.grad_accum for a larger batch)"]


# DataLoader worker processes per CPU beyond which workers only wait for one another (each is a process with its
# own copy of the loader's state).
WORKERS_PER_CPU = 4


def data_worker_problems(cfg: DsftConfig, env: Environment) -> list[str]:
    """``train.num_workers`` and ``data.num_proc`` against this machine's CPUs (not for a launch script's cluster,
    unknown here): the DataLoader starts every worker at once, datasets' map one process per record up to
    ``num_proc``, so ``99999999999`` would start processes until the machine ran out of them."""
    cpus = os.cpu_count()
    if not env.inspect_packages or not cpus:
        return []
    most = WORKERS_PER_CPU * cpus
    problems = []
    if cfg.train.num_workers > most:
        problems.append(f"train.num_workers={cfg.train.num_workers}: DataLoader worker processes, more than "
                        f"{WORKERS_PER_CPU} for each of this machine's {cpus} CPUs; set at most {most} (0, the default, "
                        "loads in the training process: dsft's rows are tokenized before training starts)")
    if cfg.data.num_proc is not None and cfg.data.num_proc > most:
        problems.append(f"data.num_proc={cfg.data.num_proc}: tokenizing processes, more than {WORKERS_PER_CPU} for each "
                        f"of this machine's {cpus} CPUs; set at most {most} (or leave it unset: see its description)")
    return problems


def evaluation_problems(cfg: DsftConfig, has_eval: bool) -> list[str]:
    """The evaluation schedule against the training settings, given whether there is validation data."""
    t, e = cfg.train, cfg.eval
    problems = []
    # With validation data a run evaluates every eval.steps steps, or at every epoch end when it is 0.
    if has_eval and e.load_best and e.steps and t.save_steps % e.steps:
        problems.append(
            f"train.save_steps ({t.save_steps}) must be a multiple of eval.steps ({e.steps}) so the best "
            "checkpoint is saved; change one of them or set eval.load_best=false"
        )
    if t.splits_sequences() and has_eval:  # a preference objective's refusal of SP says all there is
        # transformers splits only training batches over the SP group; evaluation forwards would run the
        # all-to-all attention on whole rows as if they were shards.
        problems.append(
            f"train.sequence_parallel={t.sequence_parallel}: evaluation during training is not supported with "
            "sequence parallelism; set data.val_ratio: 0 (and no data.val files) and evaluate the run "
            "afterwards with `dsft eval`"
        )
    if e.early_stopping_patience and not has_eval:
        problems.append("eval.early_stopping_patience needs validation data (data.val or data.val_ratio > 0)")
    return problems


def unlaunched_problems(cfg: DsftConfig, env: Environment, command: str = "dsft train") -> list[str]:
    """What ``command`` (``dsft train``, a ``dsft sweep`` training its trials here) cannot run as a plain
    command (no launcher set ``WORLD_SIZE``: one process).

    DeepSpeed forms its process group from a launcher's environment; in a process no launcher started it falls
    back to MPI discovery (mpi4py), and on a machine without CUDA it fails there, after the data is prepared
    and the model loaded. GRPO's group size is checked against the one process here
    (:func:`dsft.training.objective_checks.group_size_problems`): ``dsft config show`` cannot know it.
    """
    if env.world_size is not None:
        return []
    one_process = [f"{problem}; this `{command}` is one process (no launcher set WORLD_SIZE): change the sizes, or "
                   "start it with several processes (torchrun, or the scripts of `dsft launch`)"
                   for problem in group_size_problems(cfg, 1)]
    if cfg.train.distributed != "deepspeed" or env.has_cuda():
        return one_process
    return [f"train.distributed=deepspeed: DeepSpeed runs in a launcher's processes, and this `{command}` is one "
            "plain process on a machine without CUDA; to train here set train.distributed=auto (ZeRO settings "
            "are then not applied), or write the cluster's launch scripts with `dsft launch CONFIG --launcher "
            "deepspeed|torchrun|slurm ...`", *one_process]


def training_problems(cfg: DsftConfig, env: Environment) -> list[str]:
    """Every problem of ``cfg``'s training settings on ``env``, one line each naming its key."""
    problems: list[str] = []
    # Precision, optimizer and trackers; the device is probed only where one of them needs it.
    needs_device = cfg.train.precision in ("bf16", "fp16") or cfg.train.optimizer == "adamw_8bit"
    problems += environment_problems(cfg, env.has_cuda() if needs_device else None,
                                     lambda package: not env.lacks(package))
    if cfg.train.method == "qlora":
        _collect(problems, check_qlora, env)
    if cfg.train.method == "full" and cfg.model.dtype == "float16":
        # float16 weights trained in place: no fp32 master copy, so small updates round away and Adam's
        # overflow (guide 004's torch_dtype=torch.float16: the loss was NaN at step 2). bf16 is left to whoever
        # asks for it (pure-bf16 full fine-tuning is a recipe; its range does not overflow).
        problems.append("model.dtype=float16 with train.method: full trains the float16 weights themselves (no fp32 "
                        "master copy: updates round away or overflow to NaN); leave model.dtype: auto (fp32 master "
                        "weights; fp16/bf16 mixed precision on a GPU is the training precision's), or train a LoRA "
                        "adapter over the float16 base")
    _strategy_problems(cfg, env, problems)
    _sequence_parallel_problems(cfg, env, problems)
    problems += model_size_problems(cfg)  # lora.r, train.max_seq_len against the model's config.json
    problems += tokens_per_forward_problems(cfg) + data_worker_problems(cfg, env)
    return problems + evaluation_problems(cfg, may_have_validation_data(cfg))
