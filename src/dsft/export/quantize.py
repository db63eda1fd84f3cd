"""Quantisation for serving: int8 dynamic quantisation on CPU; 4-bit bitsandbytes on GPU.

* CPU: :func:`quantize_dynamic_int8` swaps ``nn.Linear`` layers for PyTorch's dynamically quantised
  int8 linears (weights int8 per tensor, activations quantised on the fly). The output head stays in
  float32: its errors land directly on the logits, and sampling is most sensitive there. Fused MoE
  expert tensors (transformers 5 stores them as parameters, not Linear modules) also stay float32.
* GPU: 4-bit NF4 loading goes through bitsandbytes in ``dsft.models.loading.load_model(path,
  quantization="4bit")``, which raises :class:`dsft.errors.UnsupportedError` on machines without CUDA.
"""

from __future__ import annotations

import warnings
from typing import Any

from dsft.errors import UnsupportedError

KEEP_FLOAT = ("lm_head",)
# The start of torch's notice that quantised tensor creation (torch.quantize_per_tensor, ...) is deprecated.
QUANTIZED_TENSORS_DEPRECATED = r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor"


def quantize_dynamic_int8(model: Any, keep_float: tuple[str, ...] = KEEP_FLOAT) -> Any:
    """Return ``model`` (float32, on CPU) with its Linear layers int8-dynamically quantised, for CPU serving.

    Modules whose name ends with one of ``keep_float`` stay float32. The model is modified in place
    and returned in eval mode.
    """
    import torch

    try:
        with warnings.catch_warnings():
            # torch.ao.quantization announces its move to torchao; the eager API still works in torch 2.x.
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:
        raise UnsupportedError("int8 dynamic quantisation needs torch.ao.quantization (PyTorch 2.x); "
                               "upgrade torch or serve without quantisation") from exc
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise UnsupportedError("int8 dynamic quantisation runs on CPU; move the model to CPU, or on a GPU "
                               "load it with quantization='4bit' (bitsandbytes)")
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    model = model.float().eval()
    targets = {name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and not name.endswith(keep_float)}
    if not targets:
        raise UnsupportedError("int8 dynamic quantisation: the model has no nn.Linear layers to quantise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # torch 2.10+ says, as a UserWarning with a link to its tracker, that the quantised tensors this makes are
        # deprecated: `dsft serve/chat --quantize int8` printed it to every user; the eager API works (tested).
        warnings.filterwarnings("ignore", QUANTIZED_TENSORS_DEPRECATED, UserWarning)
        # A set of module names quantises exactly those modules (a type set would include lm_head).
        return quantize_dynamic(model, targets, dtype=torch.qint8, inplace=True)


def count_quantized_linears(model: Any) -> int:
    """How many dynamically quantised int8 linears ``model`` holds (for reports and tests)."""
    import torch

    quantized_linear = torch.ao.nn.quantized.dynamic.Linear
    return sum(isinstance(module, quantized_linear) for module in model.modules())
