"""Models: resolve names (``resolve``), tiny presets (``tiny``, ``tokenizers``), loading (``loading``),
LoRA targets (``lora``) and real-model config presets (``presets``). See docs/models.md."""
