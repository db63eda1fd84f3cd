"""dsft: fine-tune DeepSeek-family language models end to end."""

__version__ = "0.1.0"
