"""Load a resolved checkpoint directory: tokenizer and model, the same code for tiny presets and real models.

Choices made here, once:

* dtype ``auto``: bf16 on CUDA GPUs that support it (Ampere and newer), fp16 on older GPUs, fp32 on
  CPU (CPU bf16 matmuls are slow and lose precision in the tests' tolerances);
* attention ``auto``: flash_attention_2 when the package is installed and the model sits on a GPU in
  bf16/fp16, else PyTorch SDPA;
* quantization ``4bit`` (NF4, double quant; QLoRA) or ``8bit`` through bitsandbytes, CUDA only.

Known traps fixed while loading (see the reference notes on DeepSeek tokenizers): R1-Distill-Qwen's
config.json names BOS 151643 while its tokenizer's BOS is 151646 (:func:`align_special_tokens` makes
the model follow the tokenizer); DeepSeek-LLM ships no pad token (pad becomes EOS; labels are built
from masks, never from pad ids, so this is safe).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsft.dtype_names import WEIGHT_DTYPES
from dsft.errors import DsftError, UnsupportedError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DTYPES = ("auto", *WEIGHT_DTYPES)
QUANTIZATIONS = (None, "4bit", "8bit")


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint is, read from its config.json without loading weights."""

    model_type: str
    architecture: str
    is_moe: bool
    uses_mla: bool
    vocab_size: int | None


def read_config_json(path: Path) -> dict[str, Any]:
    """A model's ``config.json`` as a dict; a file that is no JSON object is refused naming it and the fault (the
    JSON error's line and column), where it surfaced as a traceback or as 'no native transformers class'."""
    try:
        values = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DsftError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DsftError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except OSError as exc:
        raise DsftError(f"{path}: cannot read it ({exc.strerror})") from None
    if not isinstance(values, dict):
        raise DsftError(f"{path}: a JSON {type(values).__name__}, not the object of a model's config")
    return values


def model_family_info(path: str | Path) -> ModelInfo:
    """Read ``config.json``: model_type, first architecture, whether it is MoE and whether it uses MLA."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise DsftError(f"{config_file}: missing; not a Hugging Face model directory")
    config = read_config_json(config_file)
    experts = config.get("n_routed_experts") or config.get("num_experts") or config.get("num_local_experts")
    return ModelInfo(
        model_type=str(config.get("model_type", "unknown")),
        architecture=str((config.get("architectures") or ["unknown"])[0]),
        is_moe=bool(experts),
        uses_mla=config.get("kv_lora_rank") is not None,
        vocab_size=config.get("vocab_size"),
    )


def resolve_device(device: str | None = None) -> str:
    """``device`` as given (checked: it must name a device this machine has), else ``cuda:LOCAL_RANK`` when
    CUDA is available, else ``cpu``."""
    import torch

    if device:
        check_device(device)
        return device

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def check_device(device: str, flag: str = "--device") -> None:
    """Refuse a device string torch cannot parse, or a GPU this machine does not have."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise DsftError(f"{flag} {device}: not a device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DsftError(f"{flag} {device}: this machine has no CUDA GPU; use cpu")
        if parsed.index is not None and parsed.index >= count:
            raise DsftError(f"{flag} {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")


def resolve_dtype(dtype: str = "auto", device: str | None = None) -> "torch.dtype":
    """Map a config dtype name to a torch dtype; ``auto`` picks bf16 / fp16 on GPU (by support), fp32 on CPU."""
    import torch

    if dtype not in DTYPES:
        raise DsftError(f"model.dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if resolve_device(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_attn_implementation(attn_implementation: str, device: str, dtype: "torch.dtype") -> str:
    """``auto`` -> flash_attention_2 on GPU when installed (bf16/fp16), else sdpa.

    An explicit flash_attention_2 where it cannot run is refused with the reason.
    """
    import torch
    from transformers.utils import is_flash_attn_2_available

    on_gpu = device.startswith("cuda")
    half = dtype in (torch.bfloat16, torch.float16)
    if attn_implementation == "auto":
        return "flash_attention_2" if on_gpu and half and is_flash_attn_2_available() else "sdpa"
    if attn_implementation == "flash_attention_2":
        if not is_flash_attn_2_available():
            raise UnsupportedError(
                "model.attn_implementation: flash_attention_2 needs the flash-attn package on a CUDA GPU "
                "(pip install flash-attn --no-build-isolation); use auto or sdpa"
            )
        if not on_gpu or not half:
            raise UnsupportedError("model.attn_implementation: flash_attention_2 runs only on CUDA in bf16/fp16")
    return attn_implementation


def bnb_config_kwargs(quantization: str, compute_dtype: "torch.dtype", sharded: bool = False) -> dict[str, Any]:
    """The ``BitsAndBytesConfig`` keyword arguments for ``4bit`` (NF4, double quant; QLoRA) or ``8bit``.

    ``sharded``: the run shards parameters over its ranks (DeepSpeed ZeRO-3 or FSDP). The packed 4-bit weights
    are then stored in ``compute_dtype`` (``bnb_4bit_quant_storage``), the dtype of the rest of the model, so
    they are sharded with the other parameters: FSDP shards floating-point parameters only (accelerate leaves
    uint8 ``Params4bit`` whole on every rank), and ZeRO-3 fetches a module's parameters together (its all-reduce
    fetch in one flat buffer of one dtype). The bytes are the same either way: two 4-bit values per uint8, four
    per bf16 element.

    >>> import torch
    >>> bnb_config_kwargs("4bit", torch.bfloat16, sharded=True)["bnb_4bit_quant_storage"]
    torch.bfloat16
    >>> "bnb_4bit_quant_storage" in bnb_config_kwargs("4bit", torch.bfloat16)
    False
    """
    if quantization not in ("4bit", "8bit"):
        raise DsftError(f"quantization: must be 4bit or 8bit, got {quantization!r}")
    if quantization == "8bit":
        return {"load_in_8bit": True}
    kwargs: dict[str, Any] = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                              "bnb_4bit_compute_dtype": compute_dtype}
    if sharded:
        kwargs["bnb_4bit_quant_storage"] = compute_dtype
    return kwargs


def quantization_config(quantization: str | None, compute_dtype: "torch.dtype", sharded: bool = False) -> Any:
    """A transformers ``BitsAndBytesConfig`` for ``4bit`` (NF4, QLoRA) / ``8bit``; None for no quantization.

    ``sharded``: see :func:`bnb_config_kwargs`.
    """
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        raise DsftError(f"quantization: must be 4bit or 8bit, got {quantization!r}")
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise UnsupportedError(
            f"{quantization} quantization (QLoRA) needs a CUDA GPU and bitsandbytes; this machine has no CUDA "
            "device. Use train.method=lora (or full) here, or run on a GPU machine with `pip install bitsandbytes`."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UnsupportedError(f"{quantization} quantization (QLoRA) needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**bnb_config_kwargs(quantization, compute_dtype, sharded))


def use_cpu_accelerator_without_cuda() -> None:
    """On a machine without CUDA, name the CPU as DeepSpeed's accelerator (``DS_ACCELERATOR``) unless set.

    accelerate imports DeepSpeed (when installed) as soon as a model is saved, wrapped or trained; with
    nothing named, DeepSpeed probes for a GPU, picks the CPU anyway and logs "Setting accelerator to CPU
    ... unable to detect it" on every command. Call this before building, loading or training a model.
    A machine with CUDA is left to DeepSpeed's own detection.
    """
    import torch  # heavy: only where a model is about to be built anyway

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


# transformers' per-tensor bars over local files: seconds long, no information, and they bury dsft's own
# output on every command. Download bars (huggingface_hub) are left alone.
LOCAL_WEIGHT_BARS = ("Loading weights", "Writing model shards")


def hide_local_weight_bars() -> None:
    """Install (once) a transformers tqdm hook that drops the bars named in :data:`LOCAL_WEIGHT_BARS`."""
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # public since transformers 5; absent before
    if set_hook is None:
        return

    def hook(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("desc") in LOCAL_WEIGHT_BARS:
            return hf_logging.EmptyTqdm(*args, **kwargs)
        return factory(*args, **kwargs)

    hook.dsft_local_weight_bars = True  # type: ignore[attr-defined]
    previous = set_hook(hook)
    if previous is not None and not getattr(previous, "dsft_local_weight_bars", False):
        set_hook(previous)  # someone else's hook: keep it rather than stack ours over it


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings for a moment (e.g. the class-name notice every DeepSeek tokenizer triggers)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


# Files that hold a vocabulary; a directory with none of them has no tokenizer to load.
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                         "sentencepiece.bpe.model", "tiktoken.model")


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:
    """Load the tokenizer of a checkpoint directory with AutoTokenizer; set pad = EOS when it has none.

    A local directory without vocabulary files is refused: transformers would otherwise build an empty
    one-token tokenizer from the config alone, and every later step would fail far from the cause.
    """
    from transformers import AutoTokenizer

    local = Path(path)
    if local.is_dir() and not any((local / name).is_file() for name in TOKENIZER_VOCAB_FILES):
        raise DsftError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_VOCAB_FILES[:3])}, ...); copy the "
                        "base model's tokenizer files into this directory")
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise DsftError(f"{path}: could not load the tokenizer ({exc})") from exc
    if len(tokenizer) < 2:
        raise DsftError(f"{path}: the tokenizer loaded with {len(tokenizer)} token(s); its files are incomplete")
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # DeepSeek-LLM ships no pad token. Pad only fills batch rows; labels come from the render mask.
        tokenizer.pad_token = tokenizer.eos_token
    _honour_add_bos_token(tokenizer, Path(path))
    return tokenizer


def _honour_add_bos_token(tokenizer: Any, path: Path) -> None:
    """Make ``add_bos_token: true`` effective when tokenizer.json's post-processor ignores it.

    transformers 5 loads DeepSeek's ``LlamaTokenizerFast`` files as a byte-level backend that takes BOS
    handling from tokenizer.json alone; a file whose post-processor is plain ByteLevel then encodes
    without the BOS the config asks for. Append a BOS template to the post-processor in that case.
    """
    config_file = path / "tokenizer_config.json"
    if not config_file.is_file() or tokenizer.bos_token_id is None:
        return
    if not json.loads(config_file.read_text(encoding="utf-8")).get("add_bos_token"):
        return
    if tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]:
        return
    from tokenizers import processors

    backend = tokenizer.backend_tokenizer
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    template = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                             special_tokens=[(bos, bos_id)])
    existing = backend.post_processor
    backend.post_processor = template if existing is None else processors.Sequence([existing, template])
    log.info("%s: add_bos_token is true but tokenizer.json adds no BOS; added it", path)


def align_special_tokens(model: Any, tokenizer: Any) -> list[str]:
    """Make ``model.config`` / ``generation_config`` use the tokenizer's BOS/EOS/pad ids; return what changed.

    The tokenizer is the source of truth: R1-Distill-Qwen's config.json says ``bos_token_id: 151643``
    (that is EOS) while its tokenizer and generation_config use 151646.
    """
    changed = []
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        wanted = getattr(tokenizer, attr, None)
        if wanted is None:
            continue
        holders = (("config", model.config), ("generation_config", getattr(model, "generation_config", None)))
        for holder_name, holder in holders:
            if holder is None:
                continue
            current = getattr(holder, attr, None)
            # eos may legitimately be a list in generation configs (several stop ids): keep it if it holds ours.
            if current == wanted or (isinstance(current, list) and wanted in current and attr == "eos_token_id"):
                continue
            setattr(holder, attr, wanted)
            changed.append(f"{holder_name}.{attr}: {current} -> {wanted}")
    if changed:
        log.info("aligned special tokens with the tokenizer: %s", "; ".join(changed))
    return changed


def load_model(
    path: str | Path,
    dtype: str = "auto",
    device: str | None = None,
    attn_implementation: str = "auto",
    quantization: str | None = None,
    trust_remote_code: bool = False,
    config_overrides: dict[str, Any] | None = None,
    sharded: bool = False,
) -> Any:
    """Load a causal LM from a checkpoint directory with the dtype, attention kernel and quantization resolved.

    ``config_overrides`` replace model-config attributes (e.g. ``attention_dropout``) before the modules
    are built, as ``from_pretrained(path, attention_dropout=0.1)`` does.

    ``device``: ``cpu`` or ``cuda:N``; None = ``cuda:LOCAL_RANK`` if CUDA else ``cpu``.
    ``sharded``: the run partitions parameters over its ranks (ZeRO-3 or FSDP), which quantised weights must be
    stored for (:func:`bnb_config_kwargs`).
    Returns the transformers model in eval mode (training code switches it to train mode).
    """
    from transformers import AutoModelForCausalLM
    from transformers.integrations import is_deepspeed_zero3_enabled

    use_cpu_accelerator_without_cuda()
    hide_local_weight_bars()
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    attn = resolve_attn_implementation(attn_implementation, target, torch_dtype)
    quant = quantization_config(quantization, torch_dtype, sharded)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "attn_implementation": attn,
                              "trust_remote_code": trust_remote_code, **(config_overrides or {})}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": target}
    elif target != "cpu" and not is_deepspeed_zero3_enabled():
        # Under ZeRO-3 loading (dsft.training.partitioned_loading) DeepSpeed places each rank's partition itself;
        # transformers refuses a device_map there.
        kwargs["device_map"] = {"": target}
    try:
        # Not silenced: "weights not initialized" warnings from a real checkpoint must be seen.
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise DsftError(f"{path}: could not load the model ({exc})") from exc
    model.eval()
    return model
