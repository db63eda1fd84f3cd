"""Generation eval during training: answer a fixed sample of validation prompts every M steps.

Lives in dsft.eval (it generates and scores) and is handed to the training recipe by the CLI, so
dsft.training never imports dsft.eval. Results go to ``RUN_DIR/generation_eval.jsonl``: one line per
evaluation with the step, the metrics and a few sample answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from dsft.config import DsftConfig
from dsft.data.conversation import Conversation
from dsft.data.split import split_file
from dsft.eval.evaluate import generation_eval
from dsft.eval.generate import GenerationAbandoned
from dsft.eval.selection import generation_metric, metric_key
from dsft.training.ranks import warn_for_job
from dsft.training.rundir import RunDir
from dsft.training.stop import stop_requested

log = logging.getLogger(__name__)


class GenerationEvalCallback(TrainerCallback):
    """Every ``every`` optimizer steps, generate answers for the first ``samples`` validation conversations.

    With ``select_by`` (a task metric that ``eval.metric`` names, e.g. ``numeric_accuracy``), generation
    eval runs at every evaluation instead and its value joins that evaluation's metrics as
    ``eval_<select_by>``, where the best-checkpoint choice and early stopping read it.

    Single-process runs only: under DDP/FSDP/DeepSpeed the other ranks would wait on (or deadlock
    against) rank 0's generation, so it is skipped there with a warning.
    """

    def __init__(self, run_dir: Path, every: int, samples: int, max_new_tokens: int,
                 val_file: Path | None = None, thinking: bool | None = None, batch_size: int = 8,
                 temperature: float = 0.0, top_p: float = 1.0, metrics: Sequence[str] | None = None,
                 select_by: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.every = every
        self.samples = samples
        self.max_new_tokens = max_new_tokens
        self.val_file = val_file
        self.thinking = thinking
        self.batch_size = batch_size
        self.temperature = temperature
        self.top_p = top_p
        self.metrics = list(metrics or []) or None
        self.select_by = select_by
        self.conversations: list[Conversation] = []
        self.template = ""

    @classmethod
    def from_config(cls, run_dir: Path, cfg: DsftConfig) -> "GenerationEvalCallback":
        """The callback ``cfg.eval`` describes (``generation_*``, ``max_new_tokens``, ``batch_size``, ...)."""
        e = cfg.eval
        val = Path(cfg.data.prepared_dir) / split_file("val") if cfg.data.prepared_dir else None
        return cls(run_dir, e.generation_steps, e.generation_samples, e.max_new_tokens, val, cfg.template.thinking,
                   batch_size=e.batch_size, temperature=e.temperature, top_p=e.top_p, metrics=e.metrics,
                   select_by=generation_metric(e.metric))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if args.world_size > 1:
            warn_for_job(log, "eval.generation_steps: generation eval runs in single-process training only; skipped")
            self.every = 0
            return
        val = self.val_file or self.run_dir / "data" / split_file("val")
        if not val.is_file():
            warn_for_job(log, "eval.generation_steps: no validation file at %s; generation eval skipped", val)
            self.every = 0
            return
        with val.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and len(self.conversations) < self.samples:
                    self.conversations.append(Conversation.from_dict(json.loads(line)))
        self.template = RunDir(self.run_dir).template

    def _generate(self, state: Any, model: Any, tokenizer: Any) -> dict[str, Any]:
        """This step's generation eval, recorded in generation_eval.jsonl; nothing (an empty dict) where the run
        was asked to stop (SIGTERM, Ctrl-C, the dashboard's Stop) before or while it generated: the stop then
        comes at this step's end, as promised, not after every prompt's ``max_new_tokens``."""
        if stop_requested():
            log.warning("generation eval at step %d skipped: the run is stopping", state.global_step)
            return {}
        try:
            metrics, samples = generation_eval(model, tokenizer, self.template, self.conversations,
                                               max_new_tokens=self.max_new_tokens, thinking=self.thinking,
                                               batch_size=self.batch_size, metrics=self.metrics,
                                               temperature=self.temperature, top_p=self.top_p,
                                               should_stop=stop_requested)
        except GenerationAbandoned as stopped:
            log.warning("generation eval at step %d abandoned (%s): the run is stopping; nothing recorded",
                        state.global_step, stopped)
            return {}
        record = {"step": state.global_step, "metrics": metrics, "samples": samples}
        with (self.run_dir / "generation_eval.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return metrics

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    processing_class: Any = None, **kw: Any) -> None:
        if self.select_by or not self.every or state.global_step % self.every or not state.is_world_process_zero:
            return
        self._generate(state, model, processing_class)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    model: Any = None, processing_class: Any = None, **kw: Any) -> None:
        if not self.select_by or not self.every or metrics is None or not state.is_world_process_zero:
            return
        value = self._generate(state, model, processing_class).get(self.select_by)
        # No sample scored (e.g. no numbers in the answers): NaN is never the best and never an improvement.
        metrics[metric_key(self.select_by)] = float("nan") if value is None else float(value)


def training_eval_callbacks(cfg: DsftConfig, run_dir: Path) -> list[TrainerCallback]:
    """The eval callbacks a ``dsft train`` run of ``cfg`` gets (``dsft train`` and ``dsft sweep`` trials)."""
    if not cfg.eval.generation_steps:
        return []
    return [GenerationEvalCallback.from_config(run_dir, cfg)]
