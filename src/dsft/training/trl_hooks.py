"""Every private part of TRL's trainers dsft relies on, in one place, each with why.

TRL's preference and RL trainers tokenize their data themselves, through the tokenizer's chat template or
plain ``tokenizer(text)``. For DeepSeek models that is where peers go wrong (a second BOS, the R1 reasoning
stripped from the trained side, a completion merged into the prompt's last token). dsft renders every side
with its own family renderer instead and hands TRL the token ids; TRL has no public switch for "already
tokenized", so the step that tokenizes is replaced here and nowhere else. ``pyproject.toml`` pins TRL to the
range the suite passes on, and ``tests/training/test_trl_hooks.py`` checks that each hook still exists.
"""

from __future__ import annotations

from typing import Any

# class name -> {private member: why dsft overrides it}
PRIVATE_TRL_HOOKS: dict[str, dict[str, str]] = {
    "DPOTrainer": {
        "_prepare_dataset": "tokenizes prompt/chosen/rejected with the chat template; dsft passes "
                            "prompt_ids/chosen_ids/rejected_ids rendered by the family renderer instead",
    },
    "KTOTrainer": {
        "_prepare_dataset": "tokenizes prompt/completion with the chat template; dsft passes prompt_ids/"
                            "completion_ids/label rendered by the family renderer, then adds KTO's KL "
                            "completions as TRL does",
    },
    "GRPOTrainer": {
        "_tokenize_prompts": "tokenizes plain-text prompts with tokenizer(text), which adds a second BOS to a "
                             "rendered DeepSeek prompt; dsft encodes the rendered prompt without added specials",
    },
}


def is_pretokenized(dataset: Any, columns: tuple[str, ...]) -> bool:
    return dataset is not None and set(columns) <= set(getattr(dataset, "column_names", None) or ())


class PretokenizedPairsHooks:
    """Mixin for DPOTrainer: a dataset of rendered ``prompt_ids``/``chosen_ids``/``rejected_ids`` is used as is."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if is_pretokenized(dataset, ("prompt_ids", "chosen_ids", "rejected_ids")):
            return dataset  # over-long pairs were already dropped (and counted) by dsft
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)  # type: ignore[misc]


class PretokenizedCompletionsHooks:
    """Mixin for KTOTrainer: rendered ``prompt_ids``/``completion_ids``/``label`` are used as is.

    KTO estimates its KL term from mismatched (prompt, completion) pairs; TRL builds them while preparing
    the dataset by rotating the completions by one inside each batch of ``per_device_train_batch_size``
    (with sequential sampling, so the pairing holds). That step is repeated here, as TRL writes it.
    """

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if not is_pretokenized(dataset, ("prompt_ids", "completion_ids", "label")):
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)  # type: ignore[misc]
        if not self.calculate_KL:  # type: ignore[attr-defined]
            return dataset

        def add_kl_completion_ids(examples: dict[str, list]) -> dict[str, list]:
            examples["KL_completion_ids"] = [examples["completion_ids"][-1]] + examples["completion_ids"][:-1]
            return examples

        return dataset.map(add_kl_completion_ids, batched=True, batch_size=args.per_device_train_batch_size)


class RenderedPromptHooks:
    """Mixin for GRPOTrainer: prompts are dsft-rendered inference prompts (text holding the BOS already)."""

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict]:
        if prompts and isinstance(prompts[0], str):
            tokenizer = self.processing_class  # type: ignore[attr-defined]
            # Exactly the renderer's tokenization of a prompt run: one string, no added special tokens.
            ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
            return ids, None, {}
        return super()._tokenize_prompts(prompts)  # type: ignore[misc]
