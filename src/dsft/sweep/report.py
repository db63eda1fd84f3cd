"""A sweep's results: each trial's best validation value read back from its own run directory, the
choice of the best trial, and the report (``sweep.json``, ``report.md``, ``sweep.png``).

A trial's value is the best value of the selection metric (``eval.metric``) over the evaluations the
run logged after training started (the evaluation at step 0 measures the base model, the same for every
trial, and is no candidate, as for the best checkpoint), read from the trial's ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dsft.training.rundir import RunDir

SWEEP_FILE = "sweep.json"


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    run_dir: str
    # pending | finished | pruned | failed | stopped (a stop signal ended it) | running | interrupted (--collect)
    status: str = "pending"
    value: float | None = None  # the best validation value of the selection metric
    best_step: int | None = None
    steps: int | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return Path(self.run_dir).name


@dataclass
class Sweep:
    metric: str  # the key in metrics.jsonl, e.g. eval_loss
    greater_is_better: bool
    sampler: str
    trials: list[Trial] = field(default_factory=list)
    best: int | None = None  # number of the best trial
    # What the sweep was asked (SweepRequest.record), which --resume compares; None for a sweep written before.
    request: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "greater_is_better": self.greater_is_better, "sampler": self.sampler,
                "best": self.best, "trials": [asdict(t) for t in self.trials], "request": self.request}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Sweep":
        trials = [Trial(**t) for t in data.get("trials", [])]
        return cls(data["metric"], bool(data["greater_is_better"]), data.get("sampler", "grid"), trials,
                   data.get("best"), data.get("request"))


def best_evaluation(run_dir: str | Path, key: str, greater_is_better: bool) -> tuple[float | None, int | None, int | None]:
    """(best value, its step, last logged step) of ``key`` in a run's metrics.jsonl, steps > 0 only."""
    return best_in_rows(RunDir(run_dir).metrics(), key, greater_is_better)


def best_in_rows(rows: list[dict[str, Any]], key: str,
                 greater_is_better: bool) -> tuple[float | None, int | None, int | None]:
    """:func:`best_evaluation` of metrics rows already read (the dashboard follows a live run's rows).

    >>> best_in_rows([{"step": 0, "eval_loss": 0.1}, {"step": 5, "eval_loss": 2.0}, {"step": 10, "eval_loss": 1.5}],
    ...              "eval_loss", False)
    (1.5, 10, 10)
    """
    points = [(float(r[key]), int(r["step"])) for r in rows
              if r.get("step", 0) > 0 and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    last = max((int(r.get("step", 0)) for r in rows), default=None)
    if not points:
        return None, None, last
    value, step = (max if greater_is_better else min)(points, key=lambda p: p[0])
    return value, step, last


def choose_best(sweep: Sweep) -> Trial | None:
    """The trial with the best value (pruned trials count with the value they reached; ties: the first)."""
    scored = [t for t in sweep.trials if t.value is not None]
    if not scored:
        sweep.best = None
        return None
    best = (max if sweep.greater_is_better else min)(scored, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
    sweep.best = best.number
    return best


def write_report(sweep: Sweep, out: Path) -> None:
    """``sweep.json`` (machine-readable), ``report.md`` (the table) and ``sweep.png`` (the plot)."""
    choose_best(sweep)
    (out / SWEEP_FILE).write_text(json.dumps(sweep.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(sweep), encoding="utf-8")
    plot_sweep(sweep, out / "sweep.png")


def report_markdown(sweep: Sweep) -> str:
    keys = list(dict.fromkeys(k for t in sweep.trials for k in t.params))
    direction = "higher" if sweep.greater_is_better else "lower"
    lines = [f"# Sweep: {len(sweep.trials)} trials ({sweep.sampler})", "",
             f"Selection metric: `{sweep.metric}` on the validation data ({direction} is better); each trial's "
             "value is its best evaluation after training started.", ""]
    best = next((t for t in sweep.trials if t.number == sweep.best), None)
    if best is not None:
        params = ", ".join(f"`{k}={v}`" for k, v in best.params.items())
        lines += [f"**Best: {best.name}** ({params}): {sweep.metric} = {best.value:.6g} at step {best.best_step}; "
                  f"run directory `{best.run_dir}`.", ""]
    else:
        lines += ["No trial logged the selection metric.", ""]
    lines.append("| trial | " + " | ".join(keys) + f" | status | {sweep.metric} | best step | steps |")
    lines.append("|---" * (len(keys) + 5) + "|")
    for t in sweep.trials:
        value = "" if t.value is None else f"{t.value:.6g}"
        mark = " **best**" if t.number == sweep.best else ""
        cells = [f"{t.name}{mark}"] + [str(t.params.get(k, "")) for k in keys]
        cells += [t.status + (f": {t.error}" if t.error else ""), value, str(t.best_step or ""), str(t.steps or "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(sweep: Sweep, out: Path) -> Path | None:
    """Each trial's value as a bar (the best one highlighted), labelled with its parameters."""
    scored = [t for t in sweep.trials if t.value is not None]
    if not scored:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(scored) + 2), 4.2), dpi=110)
    colours = ["#d62728" if t.number == sweep.best else ("#aaaaaa" if t.status == "pruned" else "#1f77b4")
               for t in scored]
    ax.bar(range(len(scored)), [t.value for t in scored], color=colours)  # type: ignore[misc]
    labels = [t.name.removeprefix("trial-") + "\n" + "\n".join(f"{k.split('.')[-1]}={v}" for k, v in t.params.items())
              for t in scored]
    ax.set_xticks(range(len(scored)), labels, fontsize=7)
    ax.set_ylabel(f"{sweep.metric} (best per trial)")
    ax.set_title(f"{'higher' if sweep.greater_is_better else 'lower'} is better; red = chosen, grey = pruned",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
