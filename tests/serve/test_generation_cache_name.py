"""The serving loop passes the KV cache under transformers' current name (``cache``): the old
``past_key_values`` printed a FutureWarning and a deprecation line on every `dsft chat` and `dsft serve`."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("source", ["model", "lora-run"])
def test_generation_raises_no_cache_deprecation(serve_model_dir: Path, lora_run_dir: Path, source: str) -> None:
    from transformers.utils import logging as hf_logging

    from dsft.serve.generation import GenerationRequest, generate_batch
    from dsft.serve.sampling import SamplingParams
    from dsft.serve.serving_model import load_serving_model

    serving = load_serving_model(str(serve_model_dir if source == "model" else lora_run_dir))
    prompt = serving.tokenizer("What is a reservoir?", add_special_tokens=False)["input_ids"]
    records = _Records()
    hf_logging.get_logger("transformers").addHandler(records)
    hf_logging.warning_once.cache_clear()  # another test may already have had the once-only line printed
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = generate_batch(serving.model, serving.tokenizer,
                                     [GenerationRequest(prompt, SamplingParams(max_tokens=3, temperature=0))],
                                     serving.eos_ids, lambda row, text, result, logprob: None)
    finally:
        hf_logging.get_logger("transformers").removeHandler(records)
    assert results[0].completion_tokens == 3 or results[0].finish_reason == "stop"
    said = [str(w.message) for w in caught] + records.messages
    assert not [line for line in said if "past_key_values" in line or "cache_params" in line], said
