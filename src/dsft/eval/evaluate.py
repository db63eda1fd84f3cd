"""``dsft eval``: generate answers for an eval set with the model's own template, score them, write files.

Outputs in ``out_dir``:

* ``predictions.jsonl``: per item the rendered prompt, the reference, the raw output, the parsed
  reasoning and answer, generation facts and per-sample scores. It is also a valid input of
  ``dsft metrics`` (fields ``prediction`` / ``reference`` / ``prompt_opened_think``).
* ``metrics.json``: the aggregate metrics (see :func:`dsft.eval.scoring.score_samples`), ``skipped``
  counts, what was evaluated (model, template, thinking mode (null where the template has none, with
  ``thinking_unused`` saying why a flag changed nothing), data) and generation speed.

:func:`generation_eval` is the same pipeline for a model already in memory (generation eval during
training).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dsft.eval.eval_set import (
    EvalItem, data_reading, item_from_conversation, load_eval_set, renderable_items, run_text_cleaner,
)
from dsft.eval.generate import DecodingOptions, Generation, GenerationStats, generate_batched, with_overrides
from dsft.eval.reasoning import ParsedOutput
from dsft.eval.scoring import Sample, score_samples
from dsft.eval.target import load_eval_target
from dsft.eval.text import count_tokens
from dsft.errors import DsftError
from dsft.templates import ChatTemplate, get_template
from dsft.templates.registry import unused_thinking
from dsft.markers import END_THINK, THINK


@dataclass
class EvalRun:
    """Everything one evaluation pass produced."""

    records: list[dict[str, Any]]
    metrics: dict[str, Any]
    stats: GenerationStats


def generated_reasoning_tokens(generation: Generation, parsed: ParsedOutput, tokenizer: Any) -> int:
    """Tokens the model generated inside its think block: the ids before ``</think>`` (all of them when it
    never closed), without a ``<think>`` the model wrote itself. Text re-tokenization is the fallback
    for tokenizers where ``</think>`` is not one token, capped at what was generated."""
    ids = list(generation.token_ids)
    think_id, end_id = (tokenizer.convert_tokens_to_ids(t) for t in (THINK, END_THINK))
    known = [i for i in (think_id, end_id) if isinstance(i, int) and i != tokenizer.unk_token_id]
    if not ids or len(known) < 2:
        return min(count_tokens(parsed.reasoning or "", tokenizer), generation.new_tokens)
    start = 1 if ids[0] == think_id else 0
    end = ids.index(end_id) if end_id in ids else len(ids)
    return max(0, end - start)


def _question(item: EvalItem) -> str:
    users = [m.content for m in item.prompt.messages if m.role == "user"]
    return users[-1] if users else item.prompt.messages[-1].content


def run_items(model: Any, tokenizer: Any, template: ChatTemplate, thinking: bool | None,
              items: Sequence[EvalItem], options: DecodingOptions, metrics: Sequence[str] | None = None, progress: bool = True,
              description: str = "generating", should_stop: Callable[[], bool] | None = None) -> EvalRun:
    """Render (``template`` in ``thinking`` mode), generate and score ``items``; the shared core of eval,
    compare and generation eval. Outputs are split where the family says the reply starts in a think block."""
    items, refused = renderable_items(items, template)
    if not items:
        raise DsftError(f"no usable evaluation records: the {template.name} template cannot render any prompt as "
                        "written", [f"{reason}: {count}" for reason, count in refused.items()])
    prompts = [template.render_prompt(item.prompt, thinking=thinking) for item in items]
    generations, stats = generate_batched(model, tokenizer, prompts, options, progress, description,
                                          should_stop=should_stop)
    opened = [template.prompt_opens_think(p) for p in prompts]
    samples = [
        Sample(g.text, item.reference, item.choices, item.label, prompt_opened_think=o)
        for item, g, o in zip(items, generations, opened)
    ]
    scored = score_samples(samples, metrics, tokenizer)
    records = []
    for index, (item, prompt, g, parsed, scores, o) in enumerate(
        zip(items, prompts, generations, scored.parsed, scored.per_sample, opened)
    ):
        records.append({
            "index": index, "source": item.source, "question": _question(item), "prompt": prompt,
            "reference": item.reference, "reference_reasoning": item.reference_reasoning,
            "prediction": g.text, "reasoning": parsed.reasoning, "answer": parsed.answer,
            "unclosed_think": parsed.unclosed, "prompt_opened_think": o,
            "reasoning_tokens": generated_reasoning_tokens(g, parsed, tokenizer) if parsed.reasoned else 0,
            "new_tokens": g.new_tokens,
            "stopped_at_eos": g.stopped_at_eos, "choices": item.choices, "label": item.label, "scores": scores,
        })
    aggregate = dict(scored.aggregate)
    reasoned = [r["reasoning_tokens"] for r, parsed in zip(records, scored.parsed) if parsed.reasoned]
    # Generated tokens, not the reasoning text re-tokenized (which can exceed max_new_tokens).
    aggregate["mean_reasoning_tokens"] = sum(reasoned) / len(reasoned) if reasoned else None
    aggregate["skipped"] = dict(sorted((scored.skipped + refused).items()))
    aggregate["generation"] = {
        **asdict(options), "generated_tokens": stats.generated_tokens, "elapsed_s": round(stats.elapsed_s, 3),
        "tokens_per_s": round(stats.tokens_per_s, 2),
        "stopped_at_eos_rate": sum(g.stopped_at_eos for g in generations) / len(generations) if generations else None,
    }
    return EvalRun(records, aggregate, stats)


def write_eval_outputs(out_dir: str | Path, run: EvalRun) -> Path:
    """Write ``predictions.jsonl`` and ``metrics.json`` into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for record in run.records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / "metrics.json").write_text(json.dumps(run.metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def evaluate_target(target: Any, items: Sequence[EvalItem], options: DecodingOptions,
                    metrics: Sequence[str] | None = None, progress: bool = True,
                    skipped_records: Counter[str] | None = None, data_label: str = "") -> EvalRun:
    """Evaluate a loaded :class:`~dsft.eval.target.EvalTarget`; records what was evaluated in the metrics."""
    run = run_items(target.model, target.tokenizer, target.template, target.thinking, items, options, metrics,
                    progress, description=f"eval {Path(target.name).name}")
    skipped = Counter(run.metrics["skipped"]) + Counter({f"data: {k}": v for k, v in (skipped_records or {}).items()})
    run.metrics["skipped"] = dict(sorted(skipped.items()))
    # Where the first record skipped for each data reason is (file:line), as data preparation names its rejections.
    first = getattr(skipped_records, "first", {})
    run.metrics["skipped_first"] = {f"data: {k}": where for k, where in sorted(first.items())}
    # The mode the prompts were rendered in: none where the template has no modes, and why (a --thinking given
    # to an R1 model rendered nothing differently, so the record must not say it thought on request).
    unused = unused_thinking(target.template, target.thinking)
    run.metrics["evaluated"] = {
        "model": target.name, "template": target.template_name, "thinking": None if unused else target.thinking,
        "thinking_unused": unused, "adapter": target.adapter, "data": data_label,
    }
    return run


def evaluate_model(
    model_or_run: str | Path,
    data: str | Path | list[str],
    out_dir: str | Path,
    options: DecodingOptions | None = None,
    limit: int | None = None,
    template: str | None = None,
    metrics: Sequence[str] | None = None,
    device: str | None = None,
    dtype: str = "auto",
    progress: bool = True,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    cache_dir: str | Path | None = None,
    thinking: bool | None = None,
    base_model: str | Path | None = None,
    data_config: Any = None,
) -> dict[str, Any]:
    """Evaluate a model directory / preset / hub id or a run directory on ``data``; write the outputs
    into ``out_dir`` and return the metrics (the content of ``metrics.json``).

    ``max_new_tokens`` / ``batch_size`` override the same fields of ``options``; ``thinking`` overrides
    the thinking mode of hybrid templates (default: the run's, else the template's own default);
    ``base_model`` overrides where a run's base model is found; ``data_config`` (a config's data section)
    gives the data.format and data.columns that read ``data`` (default: the run's, else detected).
    """
    options = with_overrides(options, max_new_tokens=max_new_tokens, batch_size=batch_size)
    fmt, columns = data_reading(model_or_run, data_config)
    items, skipped = load_eval_set(data, limit, fmt, columns, clean=run_text_cleaner(model_or_run))
    target = load_eval_target(model_or_run, template, device=device, dtype=dtype, cache_dir=cache_dir,
                              base_model=base_model)
    if thinking is not None:
        target.thinking = thinking
    run = evaluate_target(target, items, options, metrics, progress, skipped, str(data))
    write_eval_outputs(out_dir, run)
    return run.metrics


def generation_eval(model: Any, tokenizer: Any, template: Any, conversations: Sequence[Any],
                    max_new_tokens: int = 256, thinking: bool | None = None, batch_size: int = 8,
                    metrics: Sequence[str] | None = None, sample_count: int = 3, temperature: float = 0.0,
                    top_p: float = 1.0, should_stop: Callable[[], bool] | None = None,
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate and score answers for validation ``conversations`` with a model already in memory.

    ``template`` is a template object or name; each conversation's last assistant message is the
    reference. Returns the aggregate metrics and the first ``sample_count`` samples (question,
    reference, reasoning, answer). Greedy decoding unless ``temperature`` > 0, no progress bar; the
    model's train/eval mode is restored afterwards, so a training callback can call it every M steps.
    Raises :class:`~dsft.eval.generate.GenerationAbandoned` once ``should_stop()`` says so.
    """
    if isinstance(template, str):
        template = get_template(template, tokenizer)  # the hf family renders with the tokenizer's template
    items = []
    for conversation in conversations:
        item, _ = item_from_conversation(conversation)
        if item is not None:
            items.append(item)
    items, refused = renderable_items(items, template)
    if not items:
        return {"count": 0, "skipped": dict(refused)}, []
    run = run_items(model, tokenizer, template, thinking, items,
                    DecodingOptions(max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature,
                                    top_p=top_p), metrics, progress=False, should_stop=should_stop)
    keys = ("question", "reference", "reasoning", "answer", "scores")
    return run.metrics, [{k: r[k] for k in keys} for r in run.records[:sample_count]]
