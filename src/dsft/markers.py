"""The marker strings DeepSeek chat templates write: the one table every package reads them from.

Strings, never ids: ids differ between generations (``<think>`` is 128798 in R1, 128821 in V4,
151648 in R1-Distill-Qwen), so the tokenizer maps them. This module imports nothing from dsft, so
any layer may read it (models builds tokenizer files with these tokens, export writes GGUF metadata).
"""

from __future__ import annotations

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"

# V3 / R1 / V3.1 tool use.
TOOL_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
TOOL_CALLS_END = "<｜tool▁calls▁end｜>"
TOOL_CALL_BEGIN = "<｜tool▁call▁begin｜>"
TOOL_CALL_END = "<｜tool▁call▁end｜>"
TOOL_SEP = "<｜tool▁sep｜>"
TOOL_OUTPUTS_BEGIN = "<｜tool▁outputs▁begin｜>"
TOOL_OUTPUTS_END = "<｜tool▁outputs▁end｜>"
TOOL_OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
TOOL_OUTPUT_END = "<｜tool▁output▁end｜>"

# V3.2 / V4 tool use: DSML tags (plain text, not special tokens), e.g. ``<｜DSML｜invoke name="f">``.
DSML = "｜DSML｜"
