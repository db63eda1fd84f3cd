"""Generation eval during training: answer a fixed sample of validation prompts every M steps.

Lives in dsft.eval (it generates and scores) and is handed to the training recipe by the CLI, so
dsft.training never imports dsft.eval. Results go to ``RUN_DIR/generation_eval.jsonl``: one line per
evaluation with the step, the metrics and a few sample answers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from dsft.data.conversation import Conversation
from dsft.eval.evaluate import generation_eval

log = logging.getLogger(__name__)


class GenerationEvalCallback(TrainerCallback):
    """Every ``every`` optimizer steps, generate answers for the first ``samples`` validation conversations.

    Single-process runs only: under DDP/FSDP/DeepSpeed the other ranks would wait on (or deadlock
    against) rank 0's generation, so it is skipped there with a warning.
    """

    def __init__(self, run_dir: Path, every: int, samples: int, max_new_tokens: int,
                 val_file: Path | None = None, thinking: bool | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.every = every
        self.samples = samples
        self.max_new_tokens = max_new_tokens
        self.val_file = val_file
        self.thinking = thinking
        self.conversations: list[Conversation] = []
        self.template = ""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if args.world_size > 1:
            log.warning("eval.generation_steps: generation eval runs in single-process training only; skipped")
            self.every = 0
            return
        val = self.val_file or self.run_dir / "data" / "val.jsonl"
        if not val.is_file():
            log.warning("eval.generation_steps: no validation file at %s; generation eval skipped", val)
            self.every = 0
            return
        with val.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and len(self.conversations) < self.samples:
                    self.conversations.append(Conversation.from_dict(json.loads(line)))
        self.template = json.loads((self.run_dir / "run.json").read_text(encoding="utf-8"))["template"]

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    processing_class: Any = None, **kw: Any) -> None:
        if not self.every or state.global_step % self.every or not state.is_world_process_zero:
            return
        metrics, samples = generation_eval(model, processing_class, self.template, self.conversations,
                                           max_new_tokens=self.max_new_tokens, thinking=self.thinking)
        record = {"step": state.global_step, "metrics": metrics, "samples": samples}
        with (self.run_dir / "generation_eval.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def training_eval_callbacks(cfg: Any, run_dir: Path) -> list[TrainerCallback]:
    """The eval callbacks a ``dsft train`` run of ``cfg`` gets (``dsft train`` and ``dsft sweep`` trials)."""
    if not cfg.eval.generation_steps:
        return []
    val = Path(cfg.data.prepared_dir) / "val.jsonl" if cfg.data.prepared_dir else None
    return [GenerationEvalCallback(run_dir, cfg.eval.generation_steps, cfg.eval.generation_samples,
                                   cfg.eval.max_new_tokens, val, cfg.template.thinking)]
