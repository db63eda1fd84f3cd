"""Preference and RL objectives on TRL's trainers, with dsft's rendering and run guards.

``train.objective`` picks the algorithm; TRL implements it (DPO, KTO and GRPO from ``trl``, ORPO from
``trl.experimental``); dsft supplies what it owns for every objective:

* the data, rendered by the family renderer (:mod:`dsft.training.preference_examples`) and handed over as
  token ids (GRPO: as the exact rendered prompt text, tokenized without added specials);
* the run guards (NaN stop, atomic checkpoints, token counts) mixed into the TRL trainer class, and the
  monitoring callbacks (metrics.jsonl, TensorBoard, loss.png, progress line);
* the arguments: the same TrainingArguments as SFT (one place: :func:`build_training_arguments`) plus the
  objective's own settings from the ``preference`` / ``grpo`` config sections, read through
  :func:`dsft.training.objective_settings.objective_settings` (which owns which objective reads which key).

Reference models only where the algorithm needs one: DPO and KTO (LoRA: the base model with the adapter
disabled, so no second copy; full: TRL loads a frozen copy of the starting weights); GRPO only when
``grpo.beta > 0``; ORPO never.
"""

from __future__ import annotations

import copyreg
import dataclasses
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from dsft.config import DsftConfig
from dsft.data import LOGGER as DATA_LOGGER
from dsft.data.preference_pipeline import load_prepared_preference, prepare_preference
from dsft.data.report import rejection_notice
from dsft.errors import DsftError
from dsft.models.lora import build_lora_config, native_v5_targets
from dsft.training.examples import TokenizedSplit
from dsft.training.guards import RunGuards
from dsft.training.lean_lora import use_lean_lora
from dsft.training.objective_settings import objective_settings
from dsft.training.preference_examples import render_split
from dsft.training.ranks import warn_for_job, warnings_for_job
from dsft.training.setup import build_training_arguments, write_data_report
from dsft.training.trainer import WholeWarmupSteps
from dsft.training.trl_hooks import PretokenizedCompletionsHooks, PretokenizedPairsHooks, RenderedPromptHooks

log = logging.getLogger(__name__)


def load_preference_splits(cfg: DsftConfig, tokenizer: Any, template: Any, run_dir: Path) -> dict[str, TokenizedSplit]:
    """Prepare (or reuse) preference data, then render train/val into the examples the TRL trainer takes."""
    objective = cfg.train.objective
    if cfg.data.prepared_dir:
        prepared = load_prepared_preference(cfg.data.prepared_dir, objective)
    else:
        with warnings_for_job(DATA_LOGGER):  # every process prepares the same data: what it warns of, once
            prepared = prepare_preference(cfg, run_dir / "data", objective, tokenizer)
        if notice := rejection_notice(prepared.report, run_dir / "data"):  # said, not only in the report
            warn_for_job(log, notice)  # every process prepared the same data
    write_data_report(run_dir, prepared.report)
    max_len = cfg.train.max_seq_len
    if objective == "grpo":  # the prompt must leave room for a whole completion
        max_len -= objective_settings(cfg).max_completion_len
    splits = {name: render_split(prepared.splits.get(name, []), template, tokenizer, cfg.template.thinking, max_len)
              for name in ("train", "val")}
    return splits


# ----------------------------------------------------------------------------------------- arguments


def trl_arguments(cfg: DsftConfig, run_dir: Path, has_eval: bool, model: Any) -> Any:
    """The objective's TRL config: dsft's TrainingArguments (one place) plus the objective's own settings."""
    base = build_training_arguments(cfg, run_dir, has_eval, model)
    own, objective = objective_settings(cfg), cfg.train.objective
    if objective == "dpo":
        from trl import DPOConfig

        return _config(DPOConfig, base, beta=own.beta, loss_type=[own.loss_type], label_smoothing=own.label_smoothing,
                       max_length=None)
    if objective == "kto":
        from trl import KTOConfig

        # TRL pairs each completion with its neighbour's prompt for the KL estimate: batches in a fixed order
        # (dsft shuffles the examples once, with train.seed).
        return _config(KTOConfig, base, beta=own.beta, desirable_weight=own.desirable_weight,
                       undesirable_weight=own.undesirable_weight, max_length=None, train_sampling_strategy="sequential")
    if objective == "orpo":
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # see _orpo_class
        from trl.experimental.orpo import ORPOConfig

        return _config(ORPOConfig, base, beta=own.beta, max_length=cfg.train.max_seq_len)
    from trl import GRPOConfig

    return _config(
        GRPOConfig, base, num_generations=own.num_generations, max_completion_length=own.max_completion_len,
        temperature=own.temperature, top_p=own.top_p, beta=own.beta, epsilon=own.epsilon,
        num_iterations=own.num_iterations, mask_truncated_completions=own.mask_truncated_completions,
        reward_weights=[s.weight for s in own.rewards],
    )


# Deprecated aliases the TrainingArguments already resolved into their new names (passing them again warns).
_ALIASES = ("gradient_checkpointing", "gradient_checkpointing_kwargs")


def _config(config_class: type, base: TrainingArguments, **own: Any) -> Any:
    """``config_class`` holding every TrainingArguments value of ``base`` plus the objective's ``own`` values
    (TRL's configs have defaults of their own, e.g. a lr of 1e-6: every value is passed explicitly)."""
    common = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainingArguments)
              if f.init and f.name not in _ALIASES}
    return _with_whole_warmup_steps(config_class)(**{**common, **own})


def _with_whole_warmup_steps(config_class: type) -> type:
    """``config_class`` with dsft's warmup rounding (TRL's configs are TrainingArguments of their own and would round
    a 3-step run's 0.03 up to one warmup step at lr 0, the first step of every short DPO/KTO/ORPO/GRPO run)."""

    def __reduce_ex__(self: Any, protocol: Any) -> Any:
        # Pickled (a checkpoint's training_args.bin) as TRL's own class: this one is made per run, and pickle finds
        # classes by their module's attribute.
        return copyreg._reconstructor, (config_class, object, None), self.__dict__

    return type(config_class.__name__, (WholeWarmupSteps, config_class), {"__reduce_ex__": __reduce_ex__})


# ------------------------------------------------------------------------------------------ trainers


def pair_token_counts(inputs: dict[str, Any]) -> tuple[Any, Any] | None:
    """Tokens of a padded preference batch: non-pad tokens and completion (trained) tokens (0-d tensors on
    the batch's device, read back once per log)."""
    if "attention_mask" not in inputs or "completion_mask" not in inputs:
        return None
    return inputs["attention_mask"].sum(), inputs["completion_mask"].sum()


def _dpo_class() -> type:
    from trl import DPOTrainer

    class GuardedDPO(RunGuards, PretokenizedPairsHooks, DPOTrainer):
        """DPO on dsft-rendered pairs with the run guards."""

        def count_batch_tokens(self, inputs: dict[str, Any]) -> tuple[Any, Any] | None:
            return pair_token_counts(inputs)

    return GuardedDPO


def _kto_class() -> type:
    from trl import KTOTrainer

    class GuardedKTO(RunGuards, PretokenizedCompletionsHooks, KTOTrainer):
        """KTO on dsft-rendered labelled completions with the run guards."""

        def count_batch_tokens(self, inputs: dict[str, Any]) -> tuple[Any, Any] | None:
            return pair_token_counts(inputs)

    return GuardedKTO


def _orpo_class() -> type:
    # ORPO lives in trl.experimental (TRL pinned in pyproject.toml; its test runs ORPO end to end).
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOTrainer

    class GuardedORPO(RunGuards, ORPOTrainer):
        """ORPO (reference-free) on dsft-rendered pairs with the run guards."""

        def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
            """The rows ORPO trains on, from dsft's rendered ids (ORPO's own tokenization is not used)."""
            if "prompt_ids" not in feature:
                return super().tokenize_row(feature, model)
            prompt = list(feature["prompt_ids"])
            row: dict[str, Any] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
            for side in ("chosen", "rejected"):
                completion = list(feature[f"{side}_ids"])
                ids = prompt + completion
                row[f"{side}_input_ids"] = ids
                row[f"{side}_attention_mask"] = [1] * len(ids)
                row[f"{side}_labels"] = [-100] * len(prompt) + completion
            return row

        def count_batch_tokens(self, inputs: dict[str, Any]) -> tuple[Any, Any] | None:
            sides = ("chosen", "rejected")
            if any(f"{side}_labels" not in inputs for side in sides):
                return None
            real = sum(inputs[f"{side}_attention_mask"].sum() for side in sides)
            return real, sum(inputs[f"{side}_labels"].ne(-100).sum() for side in sides)

    return GuardedORPO


def _grpo_class() -> type:
    from trl import GRPOTrainer

    class GuardedGRPO(RunGuards, RenderedPromptHooks, GRPOTrainer):
        """GRPO sampling from dsft-rendered prompts, with the run guards."""

        def count_batch_tokens(self, inputs: Any) -> tuple[Any, Any] | None:
            return None  # the step's inputs are prompts; the sampled tokens are counted in compute_loss

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
            if model.training:
                completion = inputs["completion_mask"].sum()
                self.add_unlogged_tokens(inputs["prompt_mask"].sum() + completion, completion)
            return super().compute_loss(model, inputs, *args, **kwargs)

    return GuardedGRPO


def build_objective_trainer(
    cfg: DsftConfig, run_dir: Path, model: Any, tokenizer: Any, splits: dict[str, TokenizedSplit],
    callbacks: list[Any], counter: Any, reward_funcs: list[Callable[..., Any]] | None = None,
) -> Any:
    """The TRL trainer of ``train.objective`` with dsft's guards, data and callbacks.

    ``model`` is the base model (not yet wrapped in LoRA): for ``lora`` TRL wraps it with dsft's adapter
    config, so that "adapter disabled" is the untouched base, the reference DPO and KTO need.
    """
    from datasets import Dataset

    objective = cfg.train.objective
    val = splits["val"].examples
    args = trl_arguments(cfg, run_dir, has_eval=bool(val), model=model)
    peft_config = build_lora_config(cfg.lora, model) if cfg.train.method in ("lora", "qlora") else None
    kwargs: dict[str, Any] = dict(
        model=model, args=args, train_dataset=Dataset.from_list(splits["train"].examples),
        eval_dataset=Dataset.from_list(val) if val else None, processing_class=tokenizer,
        callbacks=callbacks, peft_config=peft_config, token_counter=counter,
    )
    if objective == "dpo":
        trainer_class = _dpo_class()
    elif objective == "kto":
        trainer_class = _kto_class()
        # Fixed-order batches (see trl_arguments): shuffle once here, seeded, so the two halves of a pair read
        # as KTO data are not always neighbours.
        order = list(range(len(splits["train"].examples)))
        random.Random(cfg.train.seed).shuffle(order)
        kwargs["train_dataset"] = Dataset.from_list([splits["train"].examples[i] for i in order])
    elif objective == "orpo":
        trainer_class = _orpo_class()
    elif objective == "grpo":
        if not reward_funcs:
            raise DsftError("train.objective=grpo needs reward functions (grpo.rewards)", job_wide=True)
        trainer_class = _grpo_class()
        kwargs["reward_funcs"] = reward_funcs
        g = objective_settings(cfg)
        kwargs["callbacks"] = [DegenerateBatchGuard(g.stop_after_degenerate_steps, g.max_completion_len), *callbacks]
    else:
        raise DsftError(f"train.objective={objective}: not a preference objective")
    with native_v5_targets():  # dsft's LoRA targets are discovered on the v5 model: no peft rewriting
        trainer = trainer_class(**kwargs)
    # TRL wrapped the model with LoRA: dsft's lean LoRA forward, and no redundant input casts under autocast.
    use_lean_lora(trainer.model)
    # dsft logs through metrics.jsonl and its own progress line; the Trainer's dict printer is noise.
    trainer.remove_callback(PrinterCallback)
    return trainer


# ------------------------------------------------------------------------------------ GRPO guard


class DegenerateBatchGuard(TrainerCallback):
    """Loud when GRPO has nothing to learn from: every completion cut off, or no reward variance in any group.

    Either condition makes every advantage zero (the step changes nothing) while the loss looks healthy.
    Each such logged step adds a ``warning`` to its metrics.jsonl line (and the progress line shows it);
    after ``stop_after`` consecutive ones the run stops with an error naming the fix (0 = never stop).
    """

    def __init__(self, stop_after: int, max_completion_len: int) -> None:
        self.stop_after = stop_after
        self.max_completion_len = max_completion_len
        self.streak = 0

    def diagnose(self, logs: dict[str, Any]) -> str | None:
        clipped = logs.get("completions/clipped_ratio")
        flat = logs.get("frac_reward_zero_std")
        if clipped is not None and clipped >= 1.0:
            return (f"every completion was cut at grpo.max_completion_len={self.max_completion_len} tokens "
                    "(no answer after </think>, nothing to reward)")
        if flat is not None and flat >= 1.0:
            return "every group's completions got the same reward (zero variance: no learning signal)"
        return None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs or "loss" not in logs:
            return
        problem = self.diagnose(logs)
        if problem is None:
            self.streak = 0
            return
        self.streak += 1
        logs["warning"] = problem
        warn_for_job(log, "grpo step %d: %s", state.global_step, problem)  # every rank logs the gathered metrics
        if self.stop_after and self.streak >= self.stop_after:
            raise DegenerateGrpoError(
                f"grpo: stopped after {self.streak} consecutive steps in which {problem}",
                ["raise grpo.max_completion_len (reasoning models need thousands of tokens)",
                 ("check the rewards on a few completions (grpo.rewards; a reward that is always 0 or 1 gives no "
                  "signal), or raise grpo.num_generations / grpo.temperature for more varied completions"),
                 "grpo.stop_after_degenerate_steps: 0 to only warn"],
            )


class DegenerateGrpoError(DsftError):
    """GRPO made no progress for several steps (clipped completions or flat rewards)."""

    job_wide = True  # decided from metrics TRL gathers from every rank (rewards, truncation), alike on each
