"""Export a trained model: merged HF checkpoint, PEFT adapter, GGUF (llama.cpp) or Ollama, each verified.

>>> from dsft.export.api import export
>>> export("runs/r1-lora", "hf", "exports/r1-merged")  # doctest: +SKIP

The package imports nothing itself, so :mod:`dsft.export.options` (the option checks ``dsft export`` runs
before torch loads) stays light. Serving uses :func:`dsft.export.quantize.quantize_dynamic_int8` for int8
CPU inference.
"""
