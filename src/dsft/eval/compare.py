"""``dsft compare``: the same prompts through a base model and a tuned run, and a before/after report.

Both models see byte-identical prompts: the base is rendered with the tuned run's template and thinking
mode (from its ``run.json``) unless ``template`` says otherwise, so the comparison measures the weights,
not the prompt. Outputs in ``out_dir``: ``base/`` and ``tuned/`` (each ``predictions.jsonl`` +
``metrics.json``), ``comparison.json``, ``report.md``, ``report.html`` and a copy of the run's ``loss.png``.
"""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.eval.charts import loss_chart_svg, loss_summary, read_loss_curves
from dsft.eval.eval_set import data_reading, load_eval_set, run_text_cleaner
from dsft.eval.evaluate import EvalRun, evaluate_target, write_eval_outputs
from dsft.eval.generate import DecodingOptions, with_overrides
from dsft.eval.report import TASK_KEYS, THINK_KEYS, delta, render_html, render_markdown
from dsft.eval.target import load_eval_target
from dsft.training.rundir import RunDir


def _free(target: Any) -> None:
    # Two models never need to be in memory at once: drop the first before loading the second.
    del target.model
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _samples(base: EvalRun, tuned: EvalRun, count: int) -> list[dict[str, Any]]:
    samples = []
    for b, t in list(zip(base.records, tuned.records))[:count]:
        samples.append({
            "source": t["source"], "question": t["question"], "reference": t["reference"],
            "base_answer": b["answer"], "tuned_answer": t["answer"],
            "base_reasoning_tokens": b["reasoning_tokens"], "tuned_reasoning_tokens": t["reasoning_tokens"],
            "base_unclosed": b["unclosed_think"], "tuned_unclosed": t["unclosed_think"],
        })
    return samples


def _base_name(base: str | Path | None, tuned_run: str | Path, cache_dir: str | Path | None,
               base_model: str | Path | None = None) -> str:
    """``base`` as given, else the run's base model (:meth:`RunDir.base_model`: ``base_model`` where given, else
    found where it is now)."""
    if base is not None:
        return str(base)
    return str(tuned_run_of(tuned_run).base_model(base_model, cache_dir=cache_dir))


def tuned_run_of(tuned_run: str | Path) -> RunDir:
    """The run whose base model is the base side when no ``--base`` is given; refused when ``tuned_run`` is none."""
    run = RunDir.find(tuned_run)  # the run directory, its final/ or one of its checkpoints
    if run is None:
        raise DsftError("--base is required when --tuned is not a dsft run directory")
    return run


def compare_models(
    base: str | Path | None,
    tuned_run: str | Path,
    data: str | Path | list[str],
    out_dir: str | Path,
    options: DecodingOptions | None = None,
    limit: int | None = None,
    template: str | None = None,
    metrics: Sequence[str] | None = None,
    sample_count: int = 5,
    device: str | None = None,
    dtype: str = "auto",
    progress: bool = True,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    cache_dir: str | Path | None = None,
    thinking: bool | None = None,
    data_config: Any = None,
    base_model: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``base`` (default: the run's base model) and ``tuned_run`` on the same prompts.

    ``max_new_tokens`` / ``batch_size`` override the same fields of ``options``; ``cache_dir`` is
    where a tiny preset or hub id named by ``base`` is resolved; ``thinking`` overrides the run's
    thinking mode for both models; ``base_model`` overrides where the run's base model is found (a moved run:
    the tuned adapter's base, and the base side unless ``base`` is given).

    Returns ``{"base": metrics, "tuned": metrics, "delta": {metric: tuned - base}, "loss": {...},
    "template", "thinking", "thinking_unused", "data", "base_name", "tuned_name", "report_md", "report_html"}``
    (also written to ``comparison.json``).
    """
    options = with_overrides(options, max_new_tokens=max_new_tokens, batch_size=batch_size)
    out = Path(out_dir)
    base_name = _base_name(base, tuned_run, cache_dir, base_model)
    fmt, columns = data_reading(tuned_run, data_config)  # --config's data.format/columns, else the run's
    items, skipped = load_eval_set(data, limit, fmt, columns, clean=run_text_cleaner(tuned_run))

    tuned_target = load_eval_target(tuned_run, template, device=device, dtype=dtype, cache_dir=cache_dir,
                                    base_model=base_model)
    if thinking is not None:
        tuned_target.thinking = thinking
    tuned = evaluate_target(tuned_target, items, options, metrics, progress, skipped, str(data))
    write_eval_outputs(out / "tuned", tuned)
    template_name, thinking = tuned_target.template_name, tuned_target.thinking
    _free(tuned_target)

    base_target = load_eval_target(base_name, template or template_name, device=device, dtype=dtype,
                                   cache_dir=cache_dir)
    base_target.thinking = thinking
    base_run = evaluate_target(base_target, items, options, metrics, progress, skipped, str(data))
    write_eval_outputs(out / "base", base_run)
    _free(base_target)
    assert [r["prompt"] for r in base_run.records] == [r["prompt"] for r in tuned.records], "same prompts"

    run = RunDir.find(tuned_run)  # a checkpoint's run's curves too
    curves = read_loss_curves(run.metrics_path) if run is not None else {}
    if run is not None and (run.path / "loss.png").is_file():
        shutil.copyfile(run.path / "loss.png", out / "loss.png")
    result: dict[str, Any] = {
        "base_name": base_name, "tuned_name": str(tuned_run), "data": str(data), "template": template_name,
        # What the prompts were rendered in, as the tuned side recorded it (null where the template has no modes).
        "thinking": tuned.metrics["evaluated"]["thinking"],
        "thinking_unused": tuned.metrics["evaluated"]["thinking_unused"],
        "base": base_run.metrics, "tuned": tuned.metrics,
        "delta": {k: delta(base_run.metrics.get(k), tuned.metrics.get(k)) for k in TASK_KEYS + THINK_KEYS
                  if k in base_run.metrics or k in tuned.metrics},
        "loss": loss_summary(curves) if curves else {},
        "loss_png": "loss.png" if (out / "loss.png").is_file() else None,
    }
    samples = _samples(base_run, tuned, sample_count)
    (out / "report.md").write_text(render_markdown(result, samples) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render_html(result, samples, loss_chart_svg(curves)) + "\n", encoding="utf-8")
    result["report_md"], result["report_html"] = str(out / "report.md"), str(out / "report.html")
    (out / "comparison.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result
