"""A run asked to stop while its generation eval runs stops at the next token, not after every answer."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerState

from dsft.data.conversation import Conversation
from dsft.eval.callbacks import GenerationEvalCallback
from dsft.models.loading import load_model, load_tokenizer
from dsft.training.stop import StopOnSignal, stop_requested

MAX_NEW_TOKENS = 40


def _callback(run_dir: Path) -> GenerationEvalCallback:
    callback = GenerationEvalCallback(run_dir, every=1, samples=2, max_new_tokens=MAX_NEW_TOKENS)
    callback.template = "deepseek-v3"
    callback.conversations = [
        Conversation.from_dict({"messages": [{"role": "user", "content": question},
                                             {"role": "assistant", "content": answer}]})
        for question, answer in (("1+1?", "2"), ("Capital of France?", "Paris"))]
    return callback


def _forward_counting(model: Any, on_call: Callable[[int], None]) -> list[int]:
    calls: list[int] = []
    forward = model.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        on_call(len(calls))
        return forward(*args, **kwargs)

    model.forward = counting
    return calls


def test_sigterm_during_generation_eval_ends_it_at_the_next_token(
        tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    """The first SIGTERM (the dashboard's Stop, `kill`) promises a stop after the current step; a generation
    eval at that step's end used to generate every prompt to its max_new_tokens first (with a large
    eval.max_new_tokens, minutes to hours), and record answers cut by nothing. Now it ends at the next token
    and records nothing; the run then stops at that step as promised."""
    base = tiny_model_dir("tiny-deepseek-v3")
    model, tokenizer = load_model(base), load_tokenizer(base)
    callback = _callback(tmp_path)
    calls = _forward_counting(model, lambda n: os.kill(os.getpid(), signal.SIGTERM) if n == 3 else None)
    stopper = StopOnSignal()
    stopper.install()
    try:
        callback.on_step_end(None, TrainerState(global_step=1), None, model=model, processing_class=tokenizer)
        assert stopper.requested and stop_requested()
    finally:
        stopper.restore()
    assert not stop_requested(), "a restored handler no longer answers for the next run"
    assert len(calls) <= 4, f"{len(calls)} forwards: generation went on after the stop (max {MAX_NEW_TOKENS})"
    assert not (tmp_path / "generation_eval.jsonl").exists(), "answers cut short were recorded as an evaluation"


def test_without_a_stop_the_same_generation_eval_runs_and_records(
        tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    base = tiny_model_dir("tiny-deepseek-v3")
    model, tokenizer = load_model(base), load_tokenizer(base)
    callback = _callback(tmp_path)
    calls = _forward_counting(model, lambda n: None)
    stopper = StopOnSignal()
    stopper.install()
    try:
        callback.on_step_end(None, TrainerState(global_step=1), None, model=model, processing_class=tokenizer)
    finally:
        stopper.restore()
    assert len(calls) > 4
    assert (tmp_path / "generation_eval.jsonl").read_text().count("\n") == 1
