"""Cross-field checks of the preference / RL objectives: cheap, run before any model or data loads.

Each problem names the key and the fix. ``template_opens_think`` is whether the run's template leaves
the model inside an open think block (R1 and thinking modes), when it is known; GRPO then needs room for
reasoning: a completion cut before ``</think>`` has no answer, scores zero and, masked, teaches nothing
(TRL's default of a few hundred tokens does exactly that to every R1 completion).
"""

from __future__ import annotations

from typing import Any

from dsft.config import DsftConfig
from dsft.config.schema import CleanConfig
from dsft.data.conversation import Conversation, Message
from dsft.data.split import may_have_validation_data
from dsft.templates import get_template
from dsft.training.objective_settings import objective_settings

# The data.clean steps preference preparation runs (dsft.data.preference_pipeline); the others are SFT's only.
PREFERENCE_CLEAN_KEYS = ("strip_html", "normalize_unicode", "exact_dedup")
MIN_REASONING_COMPLETION = 1024  # tokens; R1-style reasoning rarely fits in fewer


def prompt_opens_think(template: Any, thinking: bool | None) -> bool:
    """Whether ``template``'s inference prompt (in the run's thinking mode) leaves the reply inside a think
    block: the family answers (:meth:`dsft.templates.spec.ChatTemplate.prompt_opens_think`)."""
    probe = template.render_prompt(Conversation([Message("user", "?")]), thinking=thinking)
    return bool(template.prompt_opens_think(probe))


def named_template_opens_think(cfg: DsftConfig) -> bool | None:
    """:func:`prompt_opens_think` for a config that names a DeepSeek family; None when the family is only
    known once the model is resolved (``auto``) or renders with the model's own template (``hf``)."""
    if cfg.template.name in ("auto", "hf"):
        return None
    return prompt_opens_think(get_template(cfg.template.name), cfg.template.thinking)


def objective_problems(cfg: DsftConfig, template_opens_think: bool | None = None,
                       world_size: int | None = 1) -> list[str]:
    """Every problem of ``cfg`` specific to ``train.objective`` (empty for sft), for a run of ``world_size``
    processes; None where that number is not known yet (``dsft config show`` with no launcher's ``WORLD_SIZE``):
    the checks that depend on it (:func:`group_size_problems`) are then left to whoever knows it."""
    t, objective = cfg.train, cfg.train.objective
    if objective == "sft":
        return []
    problems: list[str] = []
    if cfg.data.format != "auto":
        problems.append(f"data.format={cfg.data.format}: formats apply to SFT data; {objective} reads its own "
                        "record forms (see docs/preference.md); leave data.format: auto")
    if cfg.data.reasoning != "keep":
        problems.append(f"data.reasoning={cfg.data.reasoning}: the reasoning policy applies to SFT data only")
    if cfg.data.mix:
        problems.append(f"data.mix: mixing applies to SFT data only; list {objective} records in data.train")
    defaults = CleanConfig().model_dump()
    changed = [k for k, v in cfg.data.clean.model_dump().items() if k not in PREFERENCE_CLEAN_KEYS and v != defaults[k]]
    if changed:
        problems.append(f"data.clean.{changed[0]}: only data.clean.{', '.join(PREFERENCE_CLEAN_KEYS)} apply to "
                        f"{objective} data")
    if cfg.template.masking != "assistant":
        problems.append(f"template.masking={cfg.template.masking}: {objective} trains exactly the completion; "
                        "leave template.masking at its default")
    if t.label_smoothing:
        problems.append("train.label_smoothing: smooths the SFT loss only; for DPO use preference.label_smoothing")
    sft_loss_keys = [name for name, on in (("offload_activations", t.offload_activations),
                                           ("loss_chunk_size", t.loss_chunk_size != "auto"),
                                           ("loss_dtype", t.loss_dtype != "auto"),
                                           ("compact_cpu_memory", not t.compact_cpu_memory)) if on]
    if sft_loss_keys:
        problems.append(f"train.{sft_loss_keys[0]}: belongs to dsft's SFT loss; {objective} computes its loss in TRL")
    if t.sequence_parallel > 1:
        problems.append(f"train.sequence_parallel: not supported with train.objective={objective}")
    if t.compile == "layers":
        problems.append(f"train.compile=layers: for SFT runs; with train.objective={objective} use true (the whole "
                        "model) or false")
    if cfg.eval.generation_steps:
        problems.append(f"eval.generation_steps: generation eval during training is for SFT runs; evaluate the "
                        f"{objective} run afterwards with `dsft eval`")
    if objective == "kto" and t.micro_batch_size < 2:
        problems.append("train.micro_batch_size: KTO needs at least 2 (its KL term pairs each completion with "
                        "another example's prompt in the same micro-batch)")
    if objective == "grpo":
        problems += _grpo_problems(cfg, template_opens_think, world_size)
    return problems


def group_size_problems(cfg: DsftConfig, world_size: int) -> list[str]:
    """GRPO's group size against the completions ``world_size`` processes sample together (empty for other
    objectives). Any config passes for some number of processes, so this is checked only where that number is
    known: a launcher's ``WORLD_SIZE``, a launch script's nodes x GPUs, or one for a plain ``dsft train``."""
    if cfg.train.objective != "grpo":
        return []
    t, g = cfg.train, objective_settings(cfg)
    problems: list[str] = []
    completions_per_step = t.micro_batch_size * t.grad_accum * world_size
    if completions_per_step % g.num_generations:
        problems.append(
            f"grpo.num_generations={g.num_generations}: must divide the completions per optimizer step "
            f"(train.micro_batch_size x train.grad_accum x processes = {completions_per_step}); each prompt's "
            "group of completions is scored together"
        )
    if may_have_validation_data(cfg) and (t.micro_batch_size * world_size) % g.num_generations:
        problems.append(
            f"grpo.num_generations={g.num_generations}: must divide the validation completions per evaluation batch "
            f"(train.micro_batch_size x processes = {t.micro_batch_size * world_size}); each validation prompt's "
            "group is sampled and scored together (or set data.val_ratio: 0 to evaluate afterwards)")
    return problems


def _grpo_problems(cfg: DsftConfig, template_opens_think: bool | None, world_size: int | None) -> list[str]:
    t, g = cfg.train, objective_settings(cfg)
    problems = group_size_problems(cfg, world_size) if world_size is not None else []
    if g.max_completion_len >= t.max_seq_len:
        problems.append(f"grpo.max_completion_len={g.max_completion_len}: must be below train.max_seq_len="
                        f"{t.max_seq_len} (the prompt needs room too)")
    if template_opens_think and g.max_completion_len < MIN_REASONING_COMPLETION and not g.allow_short_completions:
        problems.append(
            f"grpo.max_completion_len={g.max_completion_len}: the template's prompt opens a think block, so every "
            f"completion starts with reasoning; fewer than {MIN_REASONING_COMPLETION} tokens cuts most of them "
            "before </think> (zero reward, zero loss). Raise it, or set grpo.allow_short_completions: true"
        )
    if cfg.eval.metric_key() in ("eval_loss", "eval_perplexity"):
        problems.append(f"eval.metric={cfg.eval.metric}: GRPO's eval_loss is the policy loss of its own sampled "
                        "completions (about 0 by construction), not a measure of quality; select by the validation "
                        "reward: eval.metric=reward (the GRPO default) or rewards/NAME/mean")
    return problems
