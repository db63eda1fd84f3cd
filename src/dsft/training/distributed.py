"""Multi-process training settings generated from the train config: DDP, FSDP or DeepSpeed ZeRO.

``dsft train`` runs unchanged under ``torchrun``, ``accelerate launch`` and the ``deepspeed`` launcher:
the launcher sets WORLD_SIZE / RANK / LOCAL_RANK, transformers' Trainer picks them up, and this module
turns ``train.distributed`` / ``train.zero_stage`` / ``train.offload`` into TrainingArguments kwargs.
Generated DeepSpeed JSON and FSDP settings are written into the run directory so a run is reproducible.

Batch sizes are always consistent: ``train_batch_size = micro_batch_size * grad_accum * world_size``.
MoE: FSDP wraps whole decoder layers (attention + router + all experts of that layer together);
ZeRO-3 treats each MoE block as a leaf module (``apply_zero3_leaf_modules``) so all of its experts are
gathered at once: ranks route tokens to different experts, and fetching per expert would make ranks
issue different all-gathers and hang.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from dsft.config.schema import TrainConfig
from dsft.disk import replaced_atomically
from dsft.errors import ConfigError, UnsupportedError
from dsft.training.attention_choice import SEGMENT_ATTENTION
from dsft.training.build_locks import remove_stale_locks, say_cpu_adam_build
from dsft.training.environment import resolve_precision

DEEPSPEED_FILE = "deepspeed.json"
FSDP_FILE = "fsdp.json"
# The refusal of FSDP without CUDA, with the setting that does run here (preflight says it first).
FSDP_NEEDS_CUDA = ("train.distributed=fsdp needs CUDA GPUs (accelerate runs FSDP on GPUs only); on this machine "
                   "use train.distributed=auto, which picks what the machine can run")
# Large enough that DeepSpeed does not print its own step logs (the Trainer logs).
_STEPS_PER_PRINT = 10**9


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _asked_zero_or_offload(train_cfg: TrainConfig) -> list[str]:
    """``train.zero_stage`` / ``train.offload`` where the config changes them from the defaults
    (``train.zero_stage=3``), unless off.

    Compared with the defaults, not "was the key written": a saved config.yaml lists every key, and training it
    again must choose what the first run chose (the default ZeRO-2 without offload partitions nothing in one
    process)."""
    defaults = TrainConfig()
    return [f"train.{key}={getattr(train_cfg, key)}" for key in ("zero_stage", "offload")
            if getattr(train_cfg, key) != getattr(defaults, key) and getattr(train_cfg, key) not in (0, "none")]


def _single_process_strategy(train_cfg: TrainConfig, cuda: bool, deepspeed: bool) -> str:
    """``auto`` in one process: DeepSpeed when ZeRO/offload was asked for and can run, else none (said aloud
    by :func:`unapplied_settings_notice`)."""
    return "deepspeed" if _asked_zero_or_offload(train_cfg) and cuda and deepspeed else "none"


def unapplied_settings_notice(train_cfg: TrainConfig, world_size: int, cuda: bool | None = None,
                              deepspeed: bool | None = None) -> str | None:
    """One line saying which of ``train.zero_stage`` / ``train.offload`` this run will not apply and why; None
    when every one applies (or none was set).

    One GPU with ZeRO-3 offload is a real recipe (frozen base and optimizer states in host RAM); asking for it
    and silently getting plain single-device training would hide an out-of-memory cause.
    """
    asked = _asked_zero_or_offload(train_cfg)
    if not asked or world_size > 1 or resolve_strategy(train_cfg, world_size, cuda, deepspeed) != "none":
        return None
    return (f"{', '.join(asked)}: not applied; one process without CUDA and DeepSpeed trains on a single device "
            "with no ZeRO partitioning or offload (set train.distributed=deepspeed on a CUDA machine, or remove "
            "the keys)")


def resolve_strategy(train_cfg: TrainConfig, world_size: int, cuda: bool | None = None,
                     deepspeed: bool | None = None) -> str:
    """``none`` | ``ddp`` | ``fsdp`` | ``deepspeed`` for this config and process count.

    ``auto``: one process -> none, or DeepSpeed when the config set ZeRO/offload and CUDA and DeepSpeed are
    there (:func:`_single_process_strategy`); several -> DeepSpeed ZeRO (``train.zero_stage``) on CUDA when
    DeepSpeed is installed, else DDP (CPU/gloo runs, or no DeepSpeed). ``cuda`` and ``deepspeed`` describe
    the machines the run will use (default: this one), e.g. a GPU cluster a launch script is written for.
    """
    cuda = _cuda_available() if cuda is None else cuda
    deepspeed = importlib.util.find_spec("deepspeed") is not None if deepspeed is None else deepspeed
    choice = train_cfg.distributed
    if choice == "auto":
        if world_size <= 1:
            return _single_process_strategy(train_cfg, cuda, deepspeed)
        if cuda and deepspeed and train_cfg.zero_stage > 0:
            return "deepspeed"
        return "ddp"
    if choice == "deepspeed" and not deepspeed:
        raise UnsupportedError("train.distributed=deepspeed needs DeepSpeed: pip install deepspeed (or dsft[distributed])")
    if train_cfg.offload != "none" and choice == "ddp":
        raise ConfigError(f"train.offload={train_cfg.offload}: offload needs train.distributed=deepspeed or fsdp")
    return choice


def shards_parameters(train_cfg: TrainConfig, world_size: int) -> bool:
    """Whether the run partitions the model's parameters over its ranks: DeepSpeed ZeRO-3 or FSDP."""
    strategy = resolve_strategy(train_cfg, world_size)
    return strategy == "fsdp" or (strategy == "deepspeed" and train_cfg.zero_stage == 3)


def _precision_flags(train_cfg: TrainConfig) -> tuple[bool, bool]:
    precision = resolve_precision(train_cfg.precision)
    return precision == "bf16", precision == "fp16"


def zero_optimization(train_cfg: TrainConfig) -> dict[str, Any]:
    """The ``zero_optimization`` block: stage, buckets, CPU offload of optimizer (and parameters)."""
    stage = train_cfg.zero_stage
    if train_cfg.offload == "optimizer+param" and stage != 3:
        raise ConfigError(f"train.offload=optimizer+param: parameter offload needs train.zero_stage=3, got {stage}")
    if train_cfg.offload != "none" and stage == 0:
        raise ConfigError("train.offload: offload needs train.zero_stage >= 1")
    if train_cfg.optimizer != "adamw_torch" and train_cfg.offload != "none":
        # Here, not in deepspeed_config, so the preflight refuses it before the data is read and the model loads.
        raise ConfigError(f"train.optimizer={train_cfg.optimizer}: DeepSpeed's optimizer offload runs its own CPU "
                          "AdamW; use train.optimizer=adamw_torch or train.offload=none")
    block: dict[str, Any] = {"stage": stage}
    if stage == 0:
        return block
    block.update({"overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": 5 * 10**8})
    if stage == 2 or stage == 1:
        block.update({"allgather_partitions": True, "allgather_bucket_size": 5 * 10**8, "reduce_scatter": True})
    if stage == 3:
        block.update({
            "stage3_prefetch_bucket_size": 5 * 10**7,
            "stage3_param_persistence_threshold": 10**5,
            "stage3_max_live_parameters": 10**9,
            "stage3_max_reuse_distance": 10**9,
            # final/ must be an ordinary HF checkpoint, not ZeRO shards.
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    if train_cfg.offload in ("optimizer", "optimizer+param"):
        block["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if train_cfg.offload == "optimizer+param":
        block["offload_param"] = {"device": "cpu", "pin_memory": True}
    return block


def deepspeed_config(train_cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """A complete DeepSpeed JSON (no "auto" values) matching the TrainingArguments dsft builds.

    With ``train.optimizer: adamw_torch`` the optimizer is DeepSpeed's AdamW with the config's lr, betas,
    epsilon and weight decay (its CPU Adam when the optimizer is offloaded); other optimizers are the
    Trainer's own, handed to DeepSpeed (no "optimizer" block), which optimizer offload does not support.
    The learning-rate schedule stays the Trainer's.
    """
    if world_size < 1:
        raise ConfigError(f"world size must be >= 1, got {world_size}")
    bf16, fp16 = _precision_flags(train_cfg)
    micro, accum = train_cfg.micro_batch_size, train_cfg.grad_accum
    sp = train_cfg.sequence_parallel
    # Under sequence parallelism a group of sp ranks works on the same rows, so the data-parallel degree is
    # world / sp; transformers checks the JSON against micro x accum x world, and accelerate then sets
    # micro x accum x (world / sp) itself, so the value is left to them ("auto").
    batch: int | str = micro * accum * world_size if sp <= 1 else "auto"
    optimizer = {} if train_cfg.optimizer != "adamw_torch" else {"optimizer": {
        "type": "AdamW",
        "params": {"lr": train_cfg.lr, "betas": list(train_cfg.adam_betas), "eps": train_cfg.adam_epsilon,
                   "weight_decay": train_cfg.weight_decay},
    }}
    return {
        "train_batch_size": batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": train_cfg.max_grad_norm,
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": fp16},
        **optimizer,
        "zero_optimization": zero_optimization(train_cfg),
        "steps_per_print": _STEPS_PER_PRINT,
        "wall_clock_breakdown": False,
    }


def decoder_layer_classes(model_config: Any) -> list[str]:
    """Names of the decoder-layer classes to wrap (the model class's ``_no_split_modules``)."""
    from transformers import AutoModelForCausalLM

    model_class = AutoModelForCausalLM._model_mapping.get(type(model_config), None)
    names = list(getattr(model_class, "_no_split_modules", None) or [])
    if not names:
        raise UnsupportedError(
            f"cannot tell the decoder layer class of model type {model_config.model_type!r} for FSDP wrapping; "
            "use train.distributed=deepspeed or ddp"
        )
    return names


def fsdp_settings(train_cfg: TrainConfig, model_config: Any) -> dict[str, Any]:
    """TrainingArguments ``fsdp`` / ``fsdp_config``: FSDP2, full shard, one unit per decoder layer."""
    if train_cfg.offload == "optimizer":
        raise ConfigError("train.offload=optimizer: FSDP offloads parameters and gradients together; "
                          "use train.offload=optimizer+param with fsdp, or train.distributed=deepspeed")
    config: dict[str, Any] = {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": decoder_layer_classes(model_config),
        "reshard_after_forward": True,
        "cpu_offload": train_cfg.offload == "optimizer+param",
        # final/ is written as one ordinary HF checkpoint.
        "state_dict_type": "FULL_STATE_DICT",
        "cpu_ram_efficient_loading": True,
    }
    return {"fsdp": True, "fsdp_config": config}


def moe_block_classes(model: Any) -> list[type]:
    """Module classes holding a layer's routed experts (children with 3-D expert weights, or an ``experts`` list)."""
    found: dict[str, type] = {}
    for module in model.modules():
        experts = getattr(module, "experts", None)
        if experts is not None and hasattr(module, "gate"):
            found[type(module).__name__] = type(module)
    return list(found.values())


def apply_zero3_leaf_modules(model: Any, train_cfg: TrainConfig, world_size: int) -> list[str]:
    """Under DeepSpeed ZeRO-3 mark MoE blocks as leaf modules; returns the class names marked."""
    if resolve_strategy(train_cfg, world_size) != "deepspeed" or train_cfg.zero_stage != 3:
        return []
    classes = moe_block_classes(model)
    if classes:
        from deepspeed.utils import set_z3_leaf_modules

        set_z3_leaf_modules(model, classes)
    return [c.__name__ for c in classes]


def sequence_parallel_args(
    train_cfg: TrainConfig, sp_size: int, world_size: int, model_config: Any = None
) -> dict[str, Any]:
    """TrainingArguments kwargs for DeepSpeed-Ulysses sequence parallelism over ``sp_size`` ranks.

    accelerate's ``ParallelismConfig(sp_backend="deepspeed")`` wraps the dataloader so every rank gets
    1/``sp_size`` of each row's tokens (labels pre-shifted as ``shift_labels``) and swaps the attention
    function for DeepSpeed's Ulysses all-to-all around the core attention. ``DsftTrainer`` then computes its
    chunked loss on the local tokens and normalises by the global supervised count (see
    ``trainer_hooks.ShardedLabelCountHooks``). The data-parallel degree is ``world_size / sp_size``.
    """
    if sp_size <= 1:
        return {}
    if resolve_strategy(train_cfg, world_size) != "deepspeed":
        raise ConfigError(f"train.sequence_parallel={sp_size}: needs train.distributed=deepspeed")
    attn = getattr(model_config, "_attn_implementation", None) or "sdpa"
    check_sequence_parallel(train_cfg, sp_size, world_size, model_config, attn)
    from accelerate.parallelism_config import ParallelismConfig
    from accelerate.utils import DeepSpeedSequenceParallelConfig

    handler = DeepSpeedSequenceParallelConfig(sp_seq_length_is_variable=True,
                                              sp_attn_implementation="sdpa" if attn == SEGMENT_ATTENTION else attn)
    # accelerate accepts only the kernel names it knows; DeepSpeed wraps any registered attention function.
    handler.sp_attn_implementation = attn
    config = ParallelismConfig(sp_size=sp_size, sp_backend="deepspeed", sp_handler=handler,
                               dp_replicate_size=world_size // sp_size)
    return {"parallelism_config": config}


def sequence_parallel_heads_problem(model_config: Any, sp_size: int) -> str | None:
    """Why DeepSpeed-Ulysses cannot split ``model_config``'s heads over ``sp_size`` ranks, or None.

    Each rank attends with 1/sp of the query heads; key/value heads are split the same way or, when there are
    fewer of them than ranks, replicated. DeepSpeed raises the same, but only once the model has loaded.
    Multi-head latent attention (DeepSeek-V2/V3/R1) has as many key/value heads as query heads.
    """
    heads = getattr(model_config, "num_attention_heads", None) if model_config is not None else None
    if sp_size <= 1 or not heads:
        return None
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    if heads % sp_size:
        return f"must divide the model's attention heads ({heads})"
    if kv_heads % sp_size and sp_size % kv_heads:
        return f"must divide the model's key/value heads ({kv_heads}) or be a multiple of them"
    return None


def check_sequence_parallel(train_cfg: TrainConfig, sp_size: int, world_size: int | None, model_config: Any,
                            attn: str | None) -> None:
    """Refuse ``train.sequence_parallel`` = ``sp_size`` where it cannot work, naming the key.

    ``world_size`` None (not known yet, e.g. ``dsft config show``) skips the process-count checks, a
    ``model_config`` None the architecture check, an ``attn`` None the attention-kernel checks.
    """
    if sp_size <= 1:
        return
    if world_size is not None and world_size < sp_size:
        raise ConfigError(f"train.sequence_parallel={sp_size}: needs at least {sp_size} processes (launch with "
                          f"torchrun --nproc_per_node {sp_size} or more); this run has {world_size}")
    if world_size is not None and world_size % sp_size:
        raise ConfigError(f"train.sequence_parallel={sp_size}: must divide the number of processes ({world_size})")
    if train_cfg.max_seq_len % sp_size:
        raise ConfigError(f"train.sequence_parallel={sp_size}: must divide train.max_seq_len ({train_cfg.max_seq_len})")
    heads = sequence_parallel_heads_problem(model_config, sp_size)
    if heads:
        raise ConfigError(f"train.sequence_parallel={sp_size}: {heads}")
    if attn is None:  # the kernel depends on the job's machines (`dsft launch`, `dsft plan --config`)
        _check_packed_micro_batch(train_cfg, sp_size)
        return
    flash = attn.startswith("flash_attention")
    if not flash and attn not in ("sdpa", SEGMENT_ATTENTION):
        raise ConfigError(f"train.sequence_parallel={sp_size}: needs sdpa or flash-attention, the model uses {attn!r} "
                          "(set model.attn_implementation)")
    # Packing applies to SFT only (TrainConfig.packs): a preference objective is told only what applies to it.
    if train_cfg.packs() and attn == "sdpa":
        # Ulysses drops the attention mask and, with sdpa, attends causally over the whole gathered row:
        # packed examples would see each other. flash-attention and dsft's segment attention split the row
        # where the gathered position_ids restart.
        raise ConfigError(f"train.sequence_parallel={sp_size} with sdpa attention cannot keep packed examples apart "
                          "(DeepSpeed-Ulysses discards the mask); set model.attn_implementation: auto (dsft's "
                          "segment attention, or flash-attention where installed), or train.packing: false")
    _check_packed_micro_batch(train_cfg, sp_size)


def _check_packed_micro_batch(train_cfg: TrainConfig, sp_size: int) -> None:
    if train_cfg.packs() and train_cfg.micro_batch_size > 1:
        # flash-attention and dsft's segment attention find packed examples from position_ids only in a batch
        # of one row, and under SP the batch cannot be flattened into one row (the shards are cut along each
        # row); sdpa and eager cannot keep packed examples apart at all. So whatever the kernel.
        raise ConfigError(f"train.sequence_parallel={sp_size} with packing needs train.micro_batch_size: 1 "
                          f"(got {train_cfg.micro_batch_size}); raise train.grad_accum instead")


def init_deepspeed_comm() -> None:
    """Make DeepSpeed's communication layer adopt the process group the Trainer created.

    Ulysses builds its sequence-parallel groups through ``deepspeed.comm`` before ``deepspeed.initialize``
    runs, and a model loaded once the TrainingArguments exist (TRL's DPO/KTO reference model of a full
    fine-tune) is built under ZeRO-3's ``zero.Init``, whose config check reads the world size from
    ``deepspeed.comm`` (1 when uninitialised: ``train_batch_size ... 4 != 2 * 1 * 1``). On GPUs accelerate has
    initialised it already, on CPU (gloo) nothing has. Before the arguments exist (the model of a ZeRO-3 run is
    built partitioned, :mod:`dsft.training.partitioned_loading`) nothing has on GPUs either: DeepSpeed then picks
    the accelerator's backend (NCCL), and accelerate adopts the process group it finds.
    """
    import deepspeed
    import torch.distributed as dist

    if not deepspeed.comm.is_initialized():
        backend = dist.get_backend() if dist.is_initialized() else None if _cuda_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend)


def distributed_training_args(
    train_cfg: TrainConfig, model_config: Any, run_dir: str | Path, world_size: int
) -> dict[str, Any]:
    """TrainingArguments kwargs for the strategy; writes deepspeed.json / fsdp.json into ``run_dir``."""
    run_dir = Path(run_dir)
    strategy = resolve_strategy(train_cfg, world_size)
    if train_cfg.sequence_parallel > 1 and strategy != "deepspeed":
        raise ConfigError(f"train.sequence_parallel={train_cfg.sequence_parallel}: needs train.distributed=deepspeed "
                          f"and several processes (this run: {strategy}, {world_size} process(es))")
    kwargs: dict[str, Any] = {}
    if strategy in ("ddp", "none"):
        # Fused experts and a frozen router still give every trainable parameter a gradient.
        kwargs["ddp_find_unused_parameters"] = False
        if not _cuda_available():
            kwargs["ddp_backend"] = "gloo"
        return kwargs
    if strategy == "deepspeed":
        remove_stale_locks()
        if train_cfg.offload != "none":  # its optimizer is DeepSpeed's CPU Adam, compiled on first use
            say_cpu_adam_build()
        config = deepspeed_config(train_cfg, world_size)
        path = run_dir / DEEPSPEED_FILE
        with replaced_atomically(path) as handle:  # every process writes it and DeepSpeed reads it back at once
            handle.write(json.dumps(config, indent=2) + "\n")
        kwargs["deepspeed"] = str(path)
        kwargs.update(sequence_parallel_args(train_cfg, train_cfg.sequence_parallel, world_size, model_config))
        return kwargs
    if not _cuda_available():
        # accelerate engages its FSDP plugin only for GPU-class process groups; a CPU (gloo) run would
        # silently train with plain DDP instead.
        raise UnsupportedError(FSDP_NEEDS_CUDA)
    settings = fsdp_settings(train_cfg, model_config)
    with replaced_atomically(run_dir / FSDP_FILE) as handle:  # every process writes it
        handle.write(json.dumps(settings["fsdp_config"], indent=2) + "\n")
    if not _cuda_available():
        kwargs["ddp_backend"] = "gloo"
    kwargs.update(settings)
    return kwargs
