"""Which metric a run may select its best checkpoint and stop early by (``eval.metric``).

A run logs ``eval_loss`` and ``eval_perplexity`` at every evaluation, and, with generation eval on
(``eval.generation_steps > 0``), the task metrics of :data:`dsft.eval.scoring.AGGREGATE_KEYS`. When
``eval.metric`` names a task metric, generation eval runs at every evaluation and its value joins the
evaluation's metrics as ``eval_NAME`` (see :class:`dsft.eval.callbacks.GenerationEvalCallback`).
Names are accepted with or without the ``eval_`` prefix, as transformers does.
"""

from __future__ import annotations

from dsft.config import EvalConfig
from dsft.errors import DsftError
from dsft.eval.scoring import AGGREGATE_KEYS, METRICS, metric_meant, resolve_metrics
from dsft.training.preflight import TRAINING_EVAL_METRICS

PREFIX = "eval_"


def metric_key(name: str) -> str:
    """The key the evaluation metrics hold ``name`` under (transformers adds ``eval_`` when missing)."""
    return name if name.startswith(PREFIX) else PREFIX + name


def generation_metric(name: str) -> str | None:
    """The generation-eval aggregate key ``name`` selects (``numeric_accuracy``), or None."""
    bare = metric_key(name).removeprefix(PREFIX)
    return bare if any(bare in keys for keys in AGGREGATE_KEYS.values()) else None


def selectable_metrics(objective_metrics: tuple[str, ...] = ()) -> list[str]:
    """Every name ``eval.metric`` accepts, without the optional prefix."""
    generation = [key for keys in AGGREGATE_KEYS.values() for key in keys]
    return [name.removeprefix(PREFIX) for name in (*TRAINING_EVAL_METRICS, *objective_metrics)] + generation


def eval_config_problems(eval_cfg: EvalConfig, objective_metrics: tuple[str, ...] = ()) -> list[str]:
    """Problems of the ``eval`` section: unknown metric names, a task metric without generation eval.

    ``objective_metrics``: what the training objective adds to every evaluation (GRPO: its rewards, see
    :func:`dsft.training.objective_checks.objective_eval_metrics`)."""
    problems = []
    try:
        wanted = resolve_metrics(eval_cfg.metrics)
    except DsftError as exc:
        problems.append(f"eval.metrics: {exc}")
        wanted = list(METRICS)
    key = metric_key(eval_cfg.metric)
    generation = generation_metric(eval_cfg.metric)
    if key not in (*TRAINING_EVAL_METRICS, *objective_metrics) and generation is None:
        accepted = selectable_metrics(objective_metrics)
        problems.append(f"eval.metric: unknown metric {eval_cfg.metric!r}{metric_meant(eval_cfg.metric, accepted)}; "
                        f"choose one of {', '.join(accepted)} (with or without the eval_ prefix)")
    elif generation is not None:
        if not eval_cfg.generation_steps:
            problems.append(f"eval.metric={eval_cfg.metric}: a generation-eval metric; set eval.generation_steps > 0 "
                            "(generation eval then also runs at every evaluation)")
        if not any(generation in AGGREGATE_KEYS[name] for name in wanted):
            problems.append(f"eval.metric={eval_cfg.metric}: not computed; add it to eval.metrics "
                            f"({', '.join(eval_cfg.metrics)})")
    return problems


def generation_world_problems(eval_cfg: EvalConfig, world_size: int | None) -> list[str]:
    """A task metric needs generation eval at every evaluation, which runs in single-process training only
    (other ranks would wait on rank 0's generation): with several processes it would never be logged."""
    if world_size is None or world_size <= 1 or generation_metric(eval_cfg.metric) is None:
        return []
    return [f"eval.metric={eval_cfg.metric}: generation eval runs in single-process training only, and this run has "
            f"{world_size} processes; select by eval_loss or eval_perplexity here and score generations afterwards "
            "with `dsft eval RUN --data VAL`"]
