"""Build the model partitioned under DeepSpeed ZeRO-3: each rank holds its share of the weights from the load on.

transformers builds a model inside DeepSpeed's ``zero.Init`` (every parameter partitioned over the ranks as its
module is created, the checkpoint read by rank 0 and scattered) only while a ZeRO-3 DeepSpeed config is registered
with it (``transformers.integrations.HfDeepSpeedConfig``, which it holds by weak reference). The Trainer registers
its own once its arguments exist, and dsft builds the model before them (the arguments read the loaded model's
config): without :func:`partitioned_loading` every rank would load the whole model (a full fine-tune in fp32: 4
bytes a parameter on every GPU) and DeepSpeed would partition it only when training starts.

The config registered here is the one the Trainer is given (:func:`dsft.training.distributed.deepspeed_config`),
so the parameters are built in the dtype DeepSpeed trains them in (bf16 under ``train.precision: bf16``) and, with
``train.offload: optimizer+param``, on the host. QLoRA is not built this way: transformers leaves quantised models
out of ``zero.Init`` (see docs/distributed.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dsft.config.schema import TrainConfig
from dsft.training.distributed import deepspeed_config, init_deepspeed_comm, resolve_strategy


def zero3_loading_config(train_cfg: TrainConfig, world_size: int, method: str) -> dict[str, Any] | None:
    """The DeepSpeed config the model of a ZeRO-3 run is built under; None where the run does not build it
    partitioned: no DeepSpeed, another ZeRO stage, QLoRA, or one process (nothing to partition over, and a process
    no launcher started has no rendezvous for DeepSpeed's communication layer before the Trainer's).

    Under sequence parallelism the Trainer's config leaves ``train_batch_size`` to accelerate (``"auto"``), which
    ``zero.Init`` cannot parse; it checks the batch against every process (no sequence-parallel groups exist
    yet), so here it is micro x accumulation x processes, the value transformers checks the file against.

    >>> zero3_loading_config(TrainConfig(zero_stage=3, micro_batch_size=1, grad_accum=2, sequence_parallel=2,
    ...                                  distributed="deepspeed"), 4, "full")["train_batch_size"]
    8
    >>> zero3_loading_config(TrainConfig(zero_stage=2, distributed="deepspeed"), 2, "full") is None
    True
    >>> zero3_loading_config(TrainConfig(zero_stage=3, distributed="deepspeed"), 2, "qlora") is None
    True
    >>> zero3_loading_config(TrainConfig(zero_stage=3, distributed="deepspeed"), 1, "lora") is None
    True
    """
    if (method == "qlora" or world_size < 2 or train_cfg.zero_stage != 3
            or resolve_strategy(train_cfg, world_size) != "deepspeed"):
        return None
    config = deepspeed_config(train_cfg, world_size)
    config["train_batch_size"] = train_cfg.micro_batch_size * train_cfg.grad_accum * world_size
    return config


@contextmanager
def partitioned_loading(train_cfg: TrainConfig, world_size: int, method: str) -> Iterator[bool]:
    """While open, a model transformers loads (and what is built on it: the LoRA wrap) is partitioned by ZeRO-3;
    yields whether it is (see :func:`zero3_loading_config`). Every rank must enter it: ``zero.Init`` scatters
    each parameter over the ranks as it is created."""
    config = zero3_loading_config(train_cfg, world_size, method)
    if config is None:
        yield False
        return
    from transformers.integrations import HfDeepSpeedConfig  # heavy: only for a DeepSpeed run

    init_deepspeed_comm()  # zero.Init scatters through deepspeed.comm; the Trainer would create it only later
    registered = HfDeepSpeedConfig(config)  # transformers keeps a weak reference: alive while this is open
    try:
        yield True
    finally:
        del registered  # the Trainer's arguments register their own
