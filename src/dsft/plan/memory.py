"""Per-GPU and host memory of a fine-tuning run: model states, activations, loss buffers, overhead.

Model states follow DeepSpeed's own accounting (``estimate_zero2/zero3_model_states_mem_needs``) for
ZeRO 1-3, so the planner and DeepSpeed agree on what a partition holds: bf16 parameters and gradients
(2 + 2 bytes), fp32 gradients, master weights and Adam moments (4 + 4 + 8 bytes) spread over the N
data-parallel ranks, and for ZeRO-3 the largest module gathered whole (4 bytes per parameter: its bf16
weights and gradients). Without DeepSpeed (ZeRO 0) the optimizer is plain torch AdamW, whose states
have the parameters' dtype. Activations come from tracing the real layers (``dsft.plan.activations``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from dsft.plan.activations import LayerActivations
from dsft.plan.shapes import ModelShapes

GIB = 1024**3
Method = Literal["full", "lora", "qlora"]
Offload = Literal["none", "optimizer", "optimizer+param"]
METHODS: tuple[str, ...] = get_args(Method)
OFFLOADS: tuple[str, ...] = get_args(Offload)
# bitsandbytes NF4 with double quantisation (QLoRA's): each weight packed in 4 bits, a parameter that ZeRO-3
# partitions, and the quantisation state: one absmax per block of 64 weights, itself quantised to 8 bits, with one
# fp32 absmax per 256 of those blocks (1/64 + 4/16384 bytes a weight, 0.127 bits). The state is no parameter or
# buffer (bitsandbytes keeps it on the weight's quant_state), so ZeRO-3 leaves it whole on every GPU. Each matrix's
# two code tables (16 and 256 fp32 values, about 1 KiB) are not counted.
NF4_PACKED_BYTES_PER_PARAM = 4 / 8
NF4_STATE_BYTES_PER_PARAM = 1 / 64 + 4 / (64 * 256)
NF4_BYTES_PER_PARAM = NF4_PACKED_BYTES_PER_PARAM + NF4_STATE_BYTES_PER_PARAM  # 4.127 bits
# peft keeps adapters in fp32 (autocast_adapter_dtype) even on a bf16 base.
ADAPTER_BYTES = 4
# CUDA context, cuBLAS/NCCL workspaces and allocator fragmentation seen on a GPU (bytes).
GPU_FRAMEWORK_BYTES = int(1.5 * GIB)
# DeepSpeed's additional_buffer_factor for host memory of offloaded states.
HOST_BUFFER_FACTOR = 1.5
SHARD_BYTES = 5 * 10**9  # the safetensors shard size transformers writes and reads one at a time


@dataclass(frozen=True)
class PlanRequest:
    """What the user wants to run; every field maps to a `dsft plan` option."""

    method: Method = "lora"
    gpus_per_node: int = 1
    nodes: int = 1
    gpu_mem_gib: float = 80.0
    host_mem_gib: float | None = None  # host RAM per node; None = not checked
    seq_len: int = 2048
    micro_batch: int = 1
    zero: int = 0
    offload: Offload = "none"
    sp: int = 1
    grad_checkpointing: bool = False
    lora_rank: int = 16
    grad_accum: int = 1  # > 1 keeps gradients alive through the forward of later micro-batches
    # supervised tokens per lm_head + CE chunk (dsft.training.loss.GPU_CHUNK_ROWS, train.loss_chunk_size: auto on a
    # GPU; a test holds them equal); None = full logits
    loss_chunk: int | None = 256
    precision: Literal["bf16", "fp32"] = "bf16"
    per_expert_modules: bool = False  # routed experts as separate modules (remote-code DeepSeek) vs fused
    device: Literal["gpu", "cpu"] = "gpu"
    # "flash": FlashAttention / flash or memory-efficient SDPA kernels (no s x s tensor; dsft's GPU default).
    # "math": eager or SDPA's math fallback, which saves the softmax probabilities (PyTorch on CPU picks
    # it when q/k and v head dims differ, as in MLA).
    attention: Literal["flash", "math"] = "flash"

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def data_parallel(self) -> int:
        """Ranks that partition ZeRO states: all of them (Ulysses SP ranks also shard ZeRO states)."""
        return self.world_size


@dataclass
class MemoryEstimate:
    """Bytes per GPU by category, host RAM per node, disk per checkpoint, and the verdict."""

    breakdown: dict[str, int]
    phases: dict[str, int]
    host_breakdown: dict[str, int]
    checkpoint_bytes: int
    gpu_mem_bytes: int
    host_mem_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def per_gpu_bytes(self) -> int:
        """The peak over the phases of a step (the categories never all coexist)."""
        return max(self.phases.values())

    @property
    def host_ram_bytes(self) -> int:
        return max(self.host_breakdown.values(), default=0)

    @property
    def fits(self) -> bool:
        """GPU memory holds the peak, and host RAM holds its share when a host size was given."""
        host_ok = self.host_mem_bytes is None or self.host_ram_bytes <= self.host_mem_bytes
        return self.per_gpu_bytes <= self.gpu_mem_bytes and host_ok

    def to_dict(self) -> dict[str, object]:
        return {
            "per_gpu_bytes": self.per_gpu_bytes,
            "breakdown": dict(self.breakdown),
            "phase_peaks": dict(self.phases),
            "host_ram_bytes": self.host_ram_bytes,
            "host_breakdown": dict(self.host_breakdown),
            "checkpoint_bytes": self.checkpoint_bytes,
            "gpu_mem_bytes": self.gpu_mem_bytes,
            "host_mem_bytes": self.host_mem_bytes,
            "fits": self.fits,
            "notes": list(self.notes),
        }


def largest_gather_params(shapes: ModelShapes, req: PlanRequest) -> int:
    """ZeRO-3 gathers one module's parameters whole; fused experts make that module all experts of a layer."""
    return shapes.largest_layer_params_per_expert if req.per_expert_modules else shapes.largest_layer_params


def gathered_base_bytes(shapes: ModelShapes, req: PlanRequest) -> int:
    """Bytes of the frozen base's largest module as ZeRO-3 gathers it whole, in the dtype it is stored in.

    QLoRA's Linear4bit weights are gathered as their packed 4-bit storage (``bnb_4bit_quant_storage`` only names
    the element type that packs them), without their quantisation state, which every GPU holds whole already
    (:func:`nf4_state_bytes`); the modules bitsandbytes leaves alone (embeddings, lm_head, norms, fused 3-D
    experts) are gathered in 16 bits. The peak is the larger of the two; ``4 bits x`` the largest module of all
    stands for the quantised one (when that module is not quantised, its 4-bit size is below its 16-bit one and
    drops out of the max).
    """
    width = 4 if req.precision == "fp32" else 2
    largest = largest_gather_params(shapes, req)
    if req.method != "qlora":
        return width * largest
    unquantized = (shapes.largest_unquantized_params_per_expert if req.per_expert_modules
                   else shapes.largest_unquantized_params)
    return max(width * unquantized, int(NF4_PACKED_BYTES_PER_PARAM * largest))


def full_model_states(shapes: ModelShapes, req: PlanRequest) -> dict[str, int]:
    """weights / gradients / optimizer bytes per GPU for full fine-tuning."""
    psi, n = shapes.total_params, req.data_parallel
    if req.zero == 0:
        # dsft loads full fine-tunes in fp32 (bf16 autocast on GPU): fp32 weights, gradients, Adam m and v.
        return {"weights": 4 * psi, "gradients": 4 * psi, "optimizer_states": 8 * psi}
    if req.zero in (1, 2):
        grads16 = 2 * psi if req.zero == 1 else 2 * psi // n
        if req.offload != "none":
            # Gradients stream to the host where the fp32 optimizer lives; only bf16 weights stay.
            return {"weights": 2 * psi, "gradients": 0 if req.zero == 2 else grads16, "optimizer_states": 0}
        return {"weights": 2 * psi, "gradients": grads16 + 4 * psi // n, "optimizer_states": 12 * psi // n}
    gathered = largest_gather_params(shapes, req)
    if req.offload == "optimizer+param":
        return {"weights": 2 * gathered, "gradients": 2 * gathered, "optimizer_states": 0}
    if req.offload == "optimizer":
        return {"weights": 2 * gathered + 2 * psi // n, "gradients": 2 * gathered, "optimizer_states": 0}
    return {"weights": 2 * gathered + 2 * psi // n, "gradients": 2 * gathered + 4 * psi // n,
            "optimizer_states": 12 * psi // n}


def quantized_params(shapes: ModelShapes, req: PlanRequest) -> int:
    """Weights a QLoRA base holds in NF4 (0 for LoRA and full fine-tuning).

    bitsandbytes quantises the weights of plain Linear modules (transformers' replace_with_bnb_linear);
    embeddings, lm_head, norms, biases and fused 3-D experts stay in 16 bits.
    """
    if req.method != "qlora":
        return 0
    return shapes.quantized_params + (shapes.routed_expert_params if req.per_expert_modules else 0)


def nf4_state_bytes(shapes: ModelShapes, req: PlanRequest) -> int:
    """Bytes of a QLoRA base's quantisation state (the blocks' 8-bit absmax and their fp32 second-level absmax).

    Part of :func:`frozen_base_bytes`; no parameter, so ZeRO-3 neither partitions nor offloads it: every GPU holds
    it whole.
    """
    return int(quantized_params(shapes, req) * NF4_STATE_BYTES_PER_PARAM)


def frozen_base_bytes(shapes: ModelShapes, req: PlanRequest) -> int:
    """Bytes of the frozen base weights of a LoRA/QLoRA run, whole (before any ZeRO partitioning)."""
    psi = shapes.total_params
    width = 4 if req.precision == "fp32" else 2
    quantized = quantized_params(shapes, req)
    return int(quantized * NF4_BYTES_PER_PARAM) + width * (psi - quantized)


def adapter_model_states(shapes: ModelShapes, req: PlanRequest) -> dict[str, int]:
    """Frozen base (16-bit or NF4) plus fp32 adapters, their gradients and Adam moments."""
    n = req.data_parallel
    base = frozen_base_bytes(shapes, req)
    if req.zero == 3:
        # ZeRO-3 partitions (or with parameter offload, moves to the host) the parameters and gathers one module
        # at a time; the NF4 quantisation state is no parameter and stays whole on every GPU.
        state = nf4_state_bytes(shapes, req)
        partitioned = 0 if req.offload == "optimizer+param" else (base - state) // n
        base = partitioned + state + gathered_base_bytes(shapes, req)
    adapters = shapes.lora_params(req.lora_rank)
    grad_share = n if req.zero >= 2 else 1
    opt_share = n if req.zero >= 1 else 1
    optimizer = 0 if (req.offload != "none" and req.zero > 0) else 8 * adapters // opt_share
    return {"weights": base, "lora_weights": ADAPTER_BYTES * adapters,
            "gradients": ADAPTER_BYTES * adapters // grad_share, "optimizer_states": optimizer}


@dataclass(frozen=True)
class ActivationMemory:
    """Activation bytes for one micro-batch on one GPU, split by when they are alive."""

    kept: int  # saved through the whole forward (all layers, or only layer inputs with checkpointing)
    recompute: int  # one layer's activations rebuilt during backward (checkpointing only)
    working: int  # gradients flowing between layers and of the largest saved tensor


def activation_memory(layers: list[tuple[LayerActivations, int]], req: PlanRequest) -> ActivationMemory:
    """Split traced activations into kept / recomputed / working bytes.

    ``layers`` were traced at this request's tokens per GPU (micro_batch * seq_len / sp).
    Checkpointing keeps only each layer's input and recomputes one layer at a time in backward.
    The working set is the gradient flowing between layers (input-sized, twice: incoming and
    outgoing) and the gradient of the largest saved tensor while its op runs backward.
    """
    working = 2 * max(a.input_bytes for a, _ in layers) + max(a.largest_tensor_bytes for a, _ in layers)
    if req.grad_checkpointing:
        return ActivationMemory(kept=sum(a.input_bytes * count for a, count in layers),
                                recompute=max(a.saved_bytes for a, _ in layers), working=working)
    return ActivationMemory(kept=sum(a.saved_bytes * count for a, count in layers), recompute=0, working=working)


def loading_bytes(shapes: ModelShapes, req: PlanRequest) -> int:
    """Bytes of the frozen base each GPU holds while a QLoRA run under ZeRO-3 loads it (0 for other runs).

    transformers builds a quantised model without DeepSpeed's ``zero.Init`` (bitsandbytes quantises each weight on
    the GPU it loads to), so every rank holds the whole base, its NF4 and its 16-bit parts, until
    ``deepspeed.initialize`` partitions it: the peak of a run whose base is larger than its training states.
    Without ZeRO-3 the whole base stays resident through training, so loading is never a peak of its own; LoRA and
    full fine-tunes under ZeRO-3 are built partitioned (``dsft.training.partitioned_loading``), each GPU holding its
    share from the start.
    """
    return frozen_base_bytes(shapes, req) if req.method == "qlora" and req.zero == 3 else 0


def phase_peaks(breakdown: dict[str, int], acts: ActivationMemory, loss: int, req: PlanRequest,
                loss_backward: int = 0, loading: int = 0) -> dict[str, int]:
    """Peak bytes in each phase of a step; the GPU must hold the largest.

    Weights, adapters and optimizer states persist. Gradients exist from backward to the optimizer step
    (and through the forward when gradients accumulate over micro-batches). The loss buffers live at
    the end of the forward, when every kept activation is still alive; what the loss's forward computed for
    backward (``loss_backward``, :func:`loss_backward_bytes`) is still alive when backward starts, at the loss's
    own node, before any layer is recomputed. Plain torch AdamW (ZeRO 0) allocates temporaries about the size
    of the trainable parameters during its step. ``loading`` (:func:`loading_bytes`), when not 0, adds the load
    phase: that base and the framework's overhead, before any training state exists.
    """
    persistent = (breakdown["weights"] + breakdown["lora_weights"] + breakdown["optimizer_states"]
                  + breakdown["framework_overhead"])
    grads = breakdown["gradients"]
    held_grads = grads if req.grad_accum > 1 else 0
    trainable = breakdown["lora_weights"] if req.method != "full" else breakdown["weights"]
    step_temp = trainable if req.zero == 0 else 0
    load = {"load": loading + breakdown["framework_overhead"]} if loading else {}
    return {
        **load,
        "forward_and_loss": persistent + held_grads + acts.kept + loss,
        "loss_backward": persistent + grads + acts.kept + loss_backward,
        "backward": persistent + grads + acts.kept + acts.recompute + acts.working,
        "optimizer_step": persistent + grads + step_temp,
    }


def loss_bytes(shapes: ModelShapes, req: PlanRequest, tokens: int) -> int:
    """lm_head + cross-entropy buffers for ``tokens`` supervised positions on one GPU.

    Chunked (dsft.training.loss): the gathered supervised hidden states and their gradient, one chunk
    of logits in the weight dtype and in fp32 (the softmax gradient is built in place), and, when
    lm_head trains, its fp32 gradient accumulator.
    Full logits (the stock causal-LM loss): logits, their fp32 copy, log-softmax and its gradient.
    """
    width = 4 if req.precision == "fp32" else 2
    if req.loss_chunk is None:
        per_token = shapes.vocab_size * (12 if width == 4 else width + 12)
        return tokens * per_token
    chunk = min(req.loss_chunk, tokens)
    head_grad = 4 * shapes.vocab_size * shapes.hidden_size if req.method == "full" else 0
    logits = chunk * shapes.vocab_size * (4 if width == 4 else width + 4)
    return 2 * tokens * shapes.hidden_size * width + logits + head_grad


def loss_backward_bytes(shapes: ModelShapes, req: PlanRequest, tokens: int) -> int:
    """What dsft's chunked loss holds from its forward into backward, and adds while its backward node runs, for
    ``tokens`` supervised positions on one GPU (0 for the stock full-logits loss, sized in :func:`loss_bytes`).

    Its forward computes the gradients (dsft.training.loss._ChunkedLinearCrossEntropy) and saves them: the hidden
    states' ([tokens, hidden], weight dtype) and, when lm_head trains, the weight's in fp32 ([vocab, hidden]:
    3.5 GiB on V3); under ZeRO-3 the whole loss is one lm_head module call, whose gradient DeepSpeed takes in that
    backward node. The node returns each saved gradient times the incoming scalar: a copy of the hidden one and
    the lm_head's, cast to its dtype (under ``gradients``); for a 16-bit lm_head (DeepSpeed's bf16 weights) the
    product is formed 64 MiB of rows at a time (``SCALE_CAST_BLOCK_BYTES``), not counted here.
    """
    if req.loss_chunk is None:
        return 0
    width = 4 if req.precision == "fp32" else 2
    hidden = 2 * tokens * shapes.hidden_size * width
    if req.method != "full":
        return hidden
    return hidden + 4 * shapes.vocab_size * shapes.hidden_size


def host_breakdown(shapes: ModelShapes, req: PlanRequest) -> dict[str, int]:
    """Host RAM per node: offloaded states (DeepSpeed's formulas), loading and saving peaks."""
    psi, gpus, nodes = shapes.total_params, req.world_size, req.nodes
    trainable = psi if req.method == "full" else shapes.lora_params(req.lora_rank)
    offload = 0
    if req.offload != "none" and req.zero in (1, 2):
        offload = int(trainable * max(4 * gpus, 16) * HOST_BUFFER_FACTOR) if req.method == "full" else 16 * trainable
    elif req.offload != "none" and req.zero == 3:
        per_param = 18 if req.offload == "optimizer+param" else 16
        offload = int(trainable * per_param / nodes * HOST_BUFFER_FACTOR)
        if req.method != "full" and req.offload == "optimizer+param":
            # Parameter offload moves the frozen base weights to the host too, partitioned over the nodes (not the
            # NF4 quantisation state, which is no parameter and stays on the GPUs).
            offload += (frozen_base_bytes(shapes, req) - nf4_state_bytes(shapes, req)) // nodes
    width = 4 if req.precision == "fp32" else 2
    # Each local rank reads the checkpoint memory-mapped, counted as one shard resident at a time. Under ZeRO-3 (LoRA,
    # full) only the job's first rank reads it and fills each module's partitions in turn (the model is built
    # partitioned: dsft.training.partitioned_loading); QLoRA and the other strategies load whole on every rank.
    loading = req.gpus_per_node * min(width * psi, SHARD_BYTES)
    saving = width * psi if req.method == "full" else ADAPTER_BYTES * trainable
    return {"offloaded_states": offload, "loading": loading, "saving": saving + offload}


def checkpoint_bytes(shapes: ModelShapes, req: PlanRequest) -> int:
    """Disk for one intermediate checkpoint: weights plus optimizer states (RNG and scheduler are bytes)."""
    psi = shapes.total_params
    if req.method != "full":
        adapters = shapes.lora_params(req.lora_rank)
        return ADAPTER_BYTES * adapters + 8 * adapters
    if req.zero == 0:
        width = 4 if req.precision == "fp32" else 2
        return width * psi + 2 * width * psi
    # DeepSpeed: bf16 module states plus fp32 master weights and both Adam moments.
    return 2 * psi + 12 * psi


def request_dict(req: PlanRequest) -> dict[str, object]:
    """The request as plain data (for JSON output)."""
    return asdict(req)
