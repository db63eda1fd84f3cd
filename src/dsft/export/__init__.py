"""Export a trained model: merged HF checkpoint, PEFT adapter, GGUF (llama.cpp) or Ollama, each verified.

>>> from dsft.export import export
>>> export("runs/r1-lora", "hf", "exports/r1-merged")  # doctest: +SKIP

Serving uses :func:`dsft.export.quantize.quantize_dynamic_int8` for int8 CPU inference.
"""

from dsft.export.api import EXPORT_DTYPES, EXPORT_FORMATS, ExportResult, export
from dsft.export.quantize import quantize_dynamic_int8

__all__ = ["EXPORT_DTYPES", "EXPORT_FORMATS", "ExportResult", "export", "quantize_dynamic_int8"]
