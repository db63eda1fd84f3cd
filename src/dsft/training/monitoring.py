"""Monitoring: ``metrics.jsonl``, TensorBoard events, ``loss.png`` and a rich progress bar.

One JSON object per logged optimizer step: step, epoch, loss, lr, grad_norm, tokens, supervised_tokens,
tokens_per_s, elapsed_s, GPU telemetry where NVML sees GPUs (:mod:`dsft.training.gpu_telemetry`), and
eval_loss / eval_perplexity (plus generation metrics when they are evaluated) when that step was evaluated. The Trainer logs
training values and evaluation values in two calls for the same step; they are merged into one line,
written when the step is over (at the next step's end, at a save, or at the end of training).

The file is an exact record of the run: one line per logged step, never two. The token counts and
timings are part of what the Trainer logs, so the checkpoint's trainer state (``log_history``) holds
every value of every line up to that checkpoint; on resume the file is rebuilt from it
(:func:`rebuild_metrics`), so a line lost to a kill between a checkpoint and its metrics write comes
back, and lines logged after the checkpoint (to be logged again) go.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from dsft.disk import replaced_atomically
from dsft.training.gpu_telemetry import GPU_KEY, GpuTelemetry, plot_gpu

TRAIN_KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm"}
# What preference / RL trainers (TRL) log beside the loss: DPO's rewards/* and logps/*, GRPO's reward,
# reward_std, rewards/NAME/mean, completions/*, kl, entropy; plus a guard's ``warning`` text.
OBJECTIVE_KEYS = ("reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "warning")
OBJECTIVE_PREFIXES = ("rewards/", "logps/", "logits/", "completions/", "clip_ratio/", "kl/")


def is_objective_metric(key: str) -> bool:
    return key in OBJECTIVE_KEYS or key.startswith(OBJECTIVE_PREFIXES)


class TokenCounter:
    """Tokens seen by the training loop (non-pad input tokens and supervised tokens), summed over all ranks."""

    def __init__(self) -> None:
        self.tokens = 0
        self.supervised_tokens = 0
        self.start = time.perf_counter()
        # Counts and training time already logged before a resume (from the checkpoint), so totals continue.
        self.offset_tokens = 0
        self.offset_supervised = 0
        self.offset_elapsed_s = 0.0

    def add(self, tokens: int, supervised: int) -> None:
        self.tokens += tokens
        self.supervised_tokens += supervised

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    def totals(self) -> dict[str, float]:
        """What a training log line records about tokens and time (cumulative over resumes)."""
        return {
            "tokens": self.offset_tokens + self.tokens,
            "supervised_tokens": self.offset_supervised + self.supervised_tokens,
            "tokens_per_s": round(self.tokens / max(self.elapsed_s, 1e-9), 2),
            "elapsed_s": round(self.offset_elapsed_s + self.elapsed_s, 3),
        }

    def resume_from(self, rows: list[dict[str, Any]]) -> None:
        """Continue the totals of the last training line of ``rows`` (the metrics up to the checkpoint)."""
        last_train = next((r for r in reversed(rows) if "tokens" in r), {})
        self.offset_tokens = int(last_train.get("tokens", 0))
        self.offset_supervised = int(last_train.get("supervised_tokens", 0))
        self.offset_elapsed_s = float(last_train.get("elapsed_s", 0.0))


TOTAL_KEYS = ("tokens", "supervised_tokens", "tokens_per_s", "elapsed_s")


def perplexity(loss: float) -> float:
    """exp(loss), inf where that overflows (a loss above 50 nats is inf for every practical purpose)."""
    return math.exp(loss) if loss < 50 else float("inf")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a metrics file; a line cut short by a kill mid-write is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def _train_row(entry: dict[str, Any]) -> dict[str, Any]:
    row = {name: entry[key] for key, name in TRAIN_KEYS.items() if key in entry}
    row.update({key: value for key, value in entry.items() if is_objective_metric(key)})
    row.update({key: entry[key] for key in TOTAL_KEYS if key in entry})
    return row


def _eval_row(entry: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in entry.items() if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second"))}
    if "eval_reward" not in entry:  # GRPO's eval_loss is a policy loss: its exp is no perplexity
        row["eval_perplexity"] = perplexity(entry["eval_loss"])
    return row


def rows_from_log_history(log_history: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """metrics.jsonl lines by step, as the Trainer state recorded the logs (train and eval merged)."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "step" not in entry or not ("loss" in entry or "eval_loss" in entry):
            continue
        row = rows.setdefault(int(entry["step"]), {"step": int(entry["step"]),
                                                   "epoch": round(float(entry.get("epoch") or 0.0), 4)})
        row.update(_train_row(entry) if "loss" in entry else _eval_row(entry))
    return rows


def rebuild_metrics(path: Path, log_history: list[dict[str, Any]], last_step: int) -> list[dict[str, Any]]:
    """metrics.jsonl as of the checkpoint training starts from, one line per logged step.

    Steps are those the checkpoint's ``log_history`` holds plus any the file holds up to ``last_step``;
    each line is the file's (which also carries GPU telemetry) merged over the state's, so a lost line is
    restored from the state and a repeated one is written once. Lines after ``last_step`` go: the resumed
    run logs them again; so do all lines when training starts from step 0 (a rerun into the directory of
    a run that crashed before its first checkpoint would otherwise repeat its step-0 line).
    """
    rows = {step: row for step, row in rows_from_log_history(log_history).items() if step <= last_step}
    for row in read_metrics(path) if last_step > 0 else []:
        if row["step"] <= last_step:
            rows[row["step"]] = {**rows.get(row["step"], {}), **row}
    ordered = [rows[step] for step in sorted(rows)]
    if path.is_file() or ordered:
        # Through a temporary file of this process's own: every process of a launched job finishing a resume with
        # no step left rebuilds it at once, and with one shared name a process renamed away another's file.
        with replaced_atomically(path) as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    return ordered


class MetricsCallback(TrainerCallback):
    """Writes metrics.jsonl and TensorBoard events on the main process; draws loss.png at the end."""

    def __init__(self, run_dir: Path, counter: TokenCounter, tensorboard: bool = True,
                 telemetry: GpuTelemetry | None = None) -> None:
        self.run_dir = run_dir
        self.tensorboard = tensorboard
        # Read per logged step on the main process; None on machines without NVML or GPUs (no columns).
        self.telemetry = telemetry
        self.counter = counter
        self.path = run_dir / "metrics.jsonl"
        self.pending: dict[str, Any] | None = None
        self.writer: Any = None
        self.started = False  # on_train_begin ran on this (main) process: close() draws the charts
        self.last_written: dict[str, Any] | None = None  # the file's last line
        self.evaluated: tuple[int, dict[str, float]] | None = None  # the last evaluation's step and metrics

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.counter.start = time.perf_counter()  # throughput counts training, not model loading
        if not state.is_world_process_zero:
            return
        previous = rebuild_metrics(self.path, state.log_history, state.global_step)
        self.last_written = previous[-1] if previous else None
        self.counter.resume_from(previous)
        self.started = True
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        logs: dict[str, float] | None = None, **kw: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if self.pending is not None and self.pending["step"] != state.global_step:
            self._flush()
        if "loss" in logs:
            # The token totals come with the log itself (the run guards add them, summed over ranks), so the
            # Trainer state's log_history holds them too and a resume can rebuild this line exactly.
            row = {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 4), **_train_row(logs)}
            if self.telemetry is not None:
                row.update(self.telemetry.sample())
            self.pending = {**(self.pending or {}), **row}
        if "eval_loss" in logs:
            self.pending = self.pending or {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 4)}
            self.pending.update(_eval_row(logs))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kw: Any) -> None:
        """Put the perplexity into the evaluation's own metrics too, so eval.metric may select by it; keep the
        evaluation's metrics for its line, which is written after every callback has seen them."""
        if metrics is not None and "eval_loss" in metrics and "eval_reward" not in metrics:
            metrics.setdefault("eval_perplexity", perplexity(metrics["eval_loss"]))
        if state.is_world_process_zero and metrics is not None:
            self.evaluated = (state.global_step, metrics)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.pending is not None and self.pending["step"] != state.global_step:
            self._flush()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._flush()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.close()

    def close(self) -> None:
        """Flush the last line, close TensorBoard and draw loss.png (also called when a run stops early)."""
        self._flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.started:
            self.started = False
            rows = read_metrics(self.path)
            plot_loss(rows, self.run_dir / "loss.png")
            plot_gpu(rows, self.run_dir / "gpu.png")
        if self.telemetry is not None:
            self.telemetry.close()
            self.telemetry = None

    def _flush(self) -> None:
        if self.pending is None:
            return
        row, self.pending = self.pending, None
        if self.evaluated is not None and self.evaluated[0] == row["step"] and "eval_loss" in row:
            # What later callbacks added to the evaluation's metrics after it was logged: a generation metric that
            # eval.metric selects by (eval_numeric_accuracy), set by generation eval in its on_evaluate. NaN (no
            # sample scored) is left out, as TensorBoard leaves it.
            added = _eval_row({**self.evaluated[1], "eval_loss": row["eval_loss"]})
            row.update({key: value for key, value in added.items() if key not in row
                        and isinstance(value, (int, float)) and math.isfinite(value)})
            self.evaluated = None
        if self.last_written is not None and self.last_written["step"] == row["step"]:
            # A step's values arrived after its line was written: the epoch-end evaluation runs after the
            # last step of the epoch was logged and saved. Merge them into that line (one line per step).
            row = {**self.last_written, **row}
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            self.path.write_text("".join(lines[:-1]) + json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.last_written = row
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(_tensorboard_tag(key), value, row["step"])
            self.writer.flush()


def _tensorboard_tag(key: str) -> str:
    """``eval_loss`` -> ``eval/loss``, ``gpu0_power_w`` -> ``gpu/gpu0_power_w``, ``loss`` -> ``train/loss``."""
    if key.startswith("eval_"):
        return "eval/" + key.removeprefix("eval_")
    if GPU_KEY.match(key):
        return f"gpu/{key}"
    return f"train/{key}"


def plot_loss(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Train and eval loss against optimizer step, as a PNG. Returns None when nothing was logged."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per supervised token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def monitoring_callbacks(run_dir: Path, counter: TokenCounter, progress: bool = True, tensorboard: bool = True,
                         telemetry: GpuTelemetry | None = None) -> list[TrainerCallback]:
    """metrics.jsonl + TensorBoard + loss.png (and a progress bar) for any Trainer whose guards fill ``counter``.

    The first callback is the :class:`MetricsCallback`; call its ``close()`` when a run stops with an error.
    """
    metrics = MetricsCallback(run_dir, counter, tensorboard=tensorboard, telemetry=telemetry)
    return [metrics] + ([RichProgressCallback(counter)] if progress else [])


class RichProgressCallback(TrainerCallback):
    """A progress bar with loss, lr, tokens/s and ETA (main process only). Where the output is no terminal (a
    log file: ``nohup``, SLURM's ``--output``, a CI log) a bar is drawn only once it stops, so there it prints
    one plain line per logged step instead: a run of days shows its progress in its log as it goes."""

    def __init__(self, counter: TokenCounter, console: Any = None) -> None:
        self.counter = counter
        self.console = console  # None: a rich Console on stdout
        self.progress: Any = None
        self.task: Any = None
        self.plain: Any = None  # the console plain lines go to, when it is no terminal
        self.max_steps = 0
        self.last: dict[str, float] = {}
        self.warning: str | None = None  # a guard's warning about the last logged step

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = self.console if self.console is not None else Console()
        if not console.is_terminal:
            self.plain, self.max_steps = console, state.max_steps
            return
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"), transient=False, console=console,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, stats="")

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        logs: dict[str, float] | None = None, **kw: Any,
    ) -> None:
        if self.plain is not None and logs:
            self._print_line(state, logs)
        if self.progress is not None and logs:
            self.last.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
            if "loss" in logs:
                self.warning = logs.get("warning")
            # Evaluation logs after the step's on_step_end: refresh now, or the last eval never shows.
            self._refresh(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._refresh(state)

    def _print_line(self, state: TrainerState, logs: dict[str, Any]) -> None:
        """``step 10/100  loss 1.2345  lr 2.00e-04  1,234 tok/s  12s``: the values this log call carries (the
        Trainer logs a step's training values and its evaluation in two calls, so an evaluated step has two)."""
        values = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        parts = self._stats(values)
        if not parts:
            return
        if "loss" in values or "reward" in values:
            parts.append(f"{self.counter.tokens / max(self.counter.elapsed_s, 1e-9):,.0f} tok/s")
        parts.append(f"{self.counter.elapsed_s:.0f}s")
        if logs.get("warning"):
            parts.append(f"warning: {logs['warning']}")
        self.plain.print(f"step {state.global_step}/{self.max_steps}  " + "  ".join(parts), markup=False,
                         highlight=False, soft_wrap=True)

    @staticmethod
    def _stats(values: dict[str, float]) -> list[str]:
        parts = []
        if "loss" in values:
            parts.append(f"loss {values['loss']:.4f}")
        if "eval_loss" in values:
            parts.append(f"eval {values['eval_loss']:.4f}")
        if "reward" in values:
            parts.append(f"reward {values['reward']:.3f}")
        if "learning_rate" in values:
            parts.append(f"lr {values['learning_rate']:.2e}")
        return parts

    def _refresh(self, state: TrainerState) -> None:
        if self.progress is None:
            return
        tps = self.counter.tokens / max(self.counter.elapsed_s, 1e-9)
        parts = self._stats(self.last)
        parts.append(f"{tps:,.0f} tok/s")
        if self.warning:
            parts.append(f"[bold yellow]warning: {self.warning}[/]")
        self.progress.update(self.task, completed=state.global_step, stats="  ".join(parts))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
