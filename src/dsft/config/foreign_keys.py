"""Keys of other fine-tuning setups (transformers' ``TrainingArguments``, peft's ``LoraConfig``, the guides' own
``data_args``) and what does their job in a dsft config, for the unknown-key message.

A config written from a guide (``training_args: {num_train_epochs: 3, per_device_train_batch_size: 8, ...}``)
then gets, for each key, the dsft key to use instead of ``unknown key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# A translation that starts so says that dsft has nothing to set, and why.
NO_KEY = "nothing: "

# A share of the records (guide 002's load_dataset(..., split="train[:1500]"), run_clm's max_train_samples,
# LLaMA-Factory's max_samples): dsft reads every record named, so the subset is a file of its own.
SUBSET = ("dsft reads every record of data.train; to train on the first N, write them to a file first (head -n N "
          "in.jsonl > first.jsonl; for a JSON array, jq '.[:N]' in.json > first.json)")

FOREIGN_KEYS: dict[str, str] = {
    # transformers TrainingArguments
    "num_train_epochs": "train.epochs",
    "per_device_train_batch_size": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "learning_rate": "train.lr",
    "lr_scheduler_type": "train.lr_scheduler",
    "lr_scheduler_kwargs": "train.lr_cycles (cosine_with_restarts' num_cycles, the scheduler's one argument dsft sets)",
    "warmup_steps": "train.warmup_ratio (a share of the steps, not a count)",
    "fp16": "train.precision: fp16 (or auto: bf16 where the GPU has it)",
    "bf16": "train.precision: bf16",
    "optim": "train.optimizer",
    "adam_beta1": "train.adam_betas: [beta1, beta2]",
    "adam_beta2": "train.adam_betas: [beta1, beta2]",
    "label_smoothing_factor": "train.label_smoothing",
    "dataloader_num_workers": "train.num_workers",
    "output_dir": "the --out option of dsft train (the run directory)",
    "logging_dir": "nothing: TensorBoard events go to the run directory's tb/",
    "evaluation_strategy": "eval.steps (0: at every epoch end)",
    "eval_strategy": "eval.steps (0: at every epoch end)",
    "eval_steps": "eval.steps",
    "save_strategy": "train.save_steps (a step count; the last step's checkpoint is always saved, so a run can "
                     "resume: save_strategy \"no\" is a save_steps above the run's steps with train.save_total_limit: 1)",
    "load_best_model_at_end": "eval.load_best",
    "metric_for_best_model": "eval.metric",
    "resume_from_checkpoint": "the --resume auto option of dsft train",
    "deepspeed": "train.distributed: deepspeed with train.zero_stage",
    "per_device_eval_batch_size": "eval.batch_size",
    # guide 002's TrainingArguments, each something dsft decides itself
    "no_cuda": "nothing: dsft trains on the GPU wherever CUDA is available, else on the CPU (to train on the CPU "
               "anyway, hide the GPUs: CUDA_VISIBLE_DEVICES= dsft train ...)",
    "use_cpu": "nothing: dsft trains on the GPU wherever CUDA is available, else on the CPU (to train on the CPU "
               "anyway, hide the GPUs: CUDA_VISIBLE_DEVICES= dsft train ...)",
    "dataloader_pin_memory": "nothing: dsft keeps transformers' default (the DataLoader pins host memory for copies "
                             "to a GPU); its packed rows are tokenized before training starts",
    "remove_unused_columns": "nothing: dsft's collator builds each batch from the columns dsft tokenized itself, "
                             "and no column is removed",
    "tf32": "nothing: dsft does not turn TF32 on (PyTorch leaves it off for matmuls); train.precision: bf16 "
            "(auto's choice on Ampere and later) runs the matmuls in bf16",
    # guide 001's regularisation, early stopping and shuffling words (a close spelling would point elsewhere:
    # grad_clip to grad_accum, gradient_clipping to gradient_checkpointing)
    "grad_clip": "train.max_grad_norm",
    "gradient_clipping": "train.max_grad_norm",
    "clip_grad_norm": "train.max_grad_norm",
    "patience": "eval.early_stopping_patience",
    "min_delta": "eval.early_stopping_min_delta",
    "shuffle_buffer": "nothing: dsft does not stream; the sampler draws a full permutation of the training set "
                      "every epoch, which a shuffle buffer approximates",
    "shuffle_buffer_size": "nothing: dsft does not stream; the sampler draws a full permutation of the training set "
                           "every epoch, which a shuffle buffer approximates",
    "buffer_size": "nothing: dsft does not stream; the sampler draws a full permutation of the training set every "
                   "epoch, which a shuffle buffer approximates",
    # trackers' and the Hub's arguments (wandb.init's project; TrainingArguments' push_to_hub family)
    "project": "nothing: a tracker's project is its environment variable (WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME, "
               "SWANLAB_PROJECT) for the trackers train.report_to names",
    "hub_revision": "nothing: dsft does not push to the Hub (the branch TrainingArguments pushes to); model.revision "
                    "is the revision of the model loaded",
    "push_to_hub": "nothing: dsft does not push to the Hub; upload the run's final/ or export/ directory with "
                   "huggingface_hub",
    "hub_model_id": "nothing: dsft does not push to the Hub; upload the run's final/ or export/ directory with "
                    "huggingface_hub",
    # model loading and tokenizer arguments of the guides' scripts
    "device_map": "nothing: each process trains on its own device; train.distributed shards the model over several",
    "additional_special_tokens": "nothing: dsft renders with the model's own chat template (template.name) and adds "
                                 "no tokens, so no embedding is resized",
    # model and data arguments of training scripts and the guides
    "model_name": "model.name_or_path",
    "model_name_or_path": "model.name_or_path",
    "dataset_path": "data.train",
    "train_file": "data.train",
    "validation_file": "data.val",
    "test_size": "data.val_ratio",
    "max_train_samples": NO_KEY + SUBSET,
    "max_samples": NO_KEY + SUBSET,
    "max_seq_length": "train.max_seq_len",
    "max_length": "train.max_seq_len",
    # peft LoraConfig
    "lora_r": "lora.r",
    "lora_rank": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "target_modules": "lora.targets",
}

# Words the guides use for a key, where the name alone would point elsewhere: another section has a key of
# that name that does something else (eval.batch_size, eval.steps), or the word is too general to translate in
# every section (path). Checked before the other sections' keys.
FOREIGN_KEYS_IN_SECTION: dict[tuple[str, str], str] = {
    ("train", "batch_size"): "train.micro_batch_size (rows per device per forward; an optimizer step takes "
                             "micro_batch_size x grad_accum x devices)",
    ("train", "steps"): "train.max_steps",
    ("lora", "rank"): "lora.r",
    ("model", "path"): "model.name_or_path",
    ("model", "name"): "model.name_or_path",
    ("data", "path"): "data.train",
    ("data", "split"): NO_KEY + SUBSET,
    ("train", "dropout"): "model.attention_dropout (the model's attention) or lora.dropout (the adapter's input)",
    # peft LoraConfig arguments dsft fixes
    ("lora", "bias"): "nothing: dsft's adapters train no biases (peft's bias='none')",
    ("lora", "task_type"): "nothing: dsft's adapters are for causal LMs (peft's CAUSAL_LM)",
}


# Options of the launchers the guides start training with (`deepspeed --num_gpus 2 train.py`, `torchrun
# --nproc_per_node 8`), as the option of dsft's own commands (launch, plan) that does their job.
LAUNCHER_OPTIONS: dict[str, str] = {
    "num_gpus": "--gpus-per-node",
    "nproc_per_node": "--gpus-per-node",
    "gpus": "--gpus-per-node",
    "num_nodes": "--nodes",
    "nnodes": "--nodes",
    "master_port": "--master-port",
    "master_addr": "--master-addr",
}


def foreign_option_hint(option: str, options: set[str], takes_set: bool, command: str = "dsft train") -> str | None:
    """What ``command`` (``dsft eval``: the words the user ran it by) says of an option it does not have that
    another setup's command line has: a launcher's (``--num_gpus``) as the command's own option where it has it, a
    ``TrainingArguments`` flag (``--learning_rate``, ``--deepspeed ds_config.json``) as the dsft key that does its
    job, where the command takes ``--set``; the ``--local_rank`` a launcher appends, with ``command`` started so
    that it does not.

    >>> foreign_option_hint("--num_gpus", {"--gpus-per-node", "--set"}, True)
    'use --gpus-per-node'
    >>> foreign_option_hint("--learning_rate", {"--set"}, True)
    'the config key is train.lr: --set train.lr=VALUE'
    >>> foreign_option_hint("--deepspeed", {"--set"}, True)
    'use train.distributed: deepspeed with train.zero_stage (in the config, or --set KEY=VALUE)'
    >>> foreign_option_hint("--num_gpus", {"--set"}, True)[:56]
    'this command is one process; a launcher starts one per G'
    >>> foreign_option_hint("--learning_rate", {"--out"}, False) is None
    True
    >>> foreign_option_hint("--local_rank=0", {"--set"}, True, "dsft eval")[50:]
    ' deepspeed --num_gpus N --no_local_rank --module dsft eval ... (each process reads LOCAL_RANK from its environment)'
    """
    word = option.split("=", 1)[0].lstrip("-").replace("-", "_")
    if word == "local_rank":  # what the deepspeed launcher appends to the command it starts
        launch = (", or dsft launch CONFIG --launcher deepspeed writes that command" if command == "dsft train"
                  else "")  # the one command dsft launch writes
        return (f"the deepspeed launcher adds it unless told not to: deepspeed --num_gpus N --no_local_rank --module "
                f"{command} ... (each process reads LOCAL_RANK from its environment){launch}")
    mine = LAUNCHER_OPTIONS.get(word)
    if mine is not None and mine in options:
        return f"use {mine}"
    if mine is not None and takes_set:  # train, sweep: one process each, started by a launcher
        return (f"this command is one process; a launcher starts one per GPU: dsft launch CONFIG {mine} ... writes "
                "its command (docs/distributed.md)")
    meant = FOREIGN_KEYS.get(word)
    if meant is None or not takes_set:
        return None
    if meant.startswith(NO_KEY):
        return f"dsft has no option or key for it: {meant[len(NO_KEY):]}"
    if meant.startswith("the --"):  # an option of dsft's own (output_dir: --out)
        return f"use {meant}"
    if " " not in meant:
        return f"the config key is {meant}: --set {meant}=VALUE"
    return f"use {meant} (in the config, or --set KEY=VALUE)"


def foreign_key_hint(key: str, section: str | None = None) -> str | None:
    """``use KEY`` for a key another setup names differently, else None; with ``section``, only the words
    :data:`FOREIGN_KEYS_IN_SECTION` translates there.

    >>> foreign_key_hint("per_device_train_batch_size")
    'unknown key; use train.micro_batch_size'
    >>> foreign_key_hint("rank", "lora"), foreign_key_hint("rank", "train")
    ('unknown key; use lora.r', None)
    >>> foreign_key_hint("task_type", "lora")
    "unknown key; dsft has no key for it: dsft's adapters are for causal LMs (peft's CAUSAL_LM)"
    """
    meant = FOREIGN_KEYS_IN_SECTION.get((section, key)) if section is not None else FOREIGN_KEYS.get(key)
    if meant is not None and meant.startswith(NO_KEY):
        return f"unknown key; dsft has no key for it: {meant[len(NO_KEY):]}"
    return f"unknown key; use {meant}" if meant is not None else None


def foreign_section_hint(value: Any, home: Callable[[str], str | None]) -> str | None:
    """For an unknown top-level section holding other setups' keys (``training_args: {...}``): where each goes
    (``home(key)`` names the section of a key dsft has under the same name).

    >>> foreign_section_hint({"learning_rate": 2e-5, "save_steps": 500, "colour": 1}, {"save_steps": "train.save_steps"}.get)
    'unknown section; its keys: learning_rate -> train.lr, save_steps -> train.save_steps, colour -> (no dsft key)'
    """
    if not isinstance(value, dict) or not any(str(k) in FOREIGN_KEYS for k in value):
        return None
    parts = [f"{key} -> {_translated(FOREIGN_KEYS.get(str(key))) or home(str(key)) or '(no dsft key)'}"
             for key in value]
    return "unknown section; its keys: " + ", ".join(parts)


# Top-level keys that only a DeepSpeed config has (the guides' ds_config.json).
DEEPSPEED_KEYS = ("zero_optimization", "train_micro_batch_size_per_gpu", "train_batch_size", "steps_per_print",
                  "zero_allow_untested_optimizer", "wall_clock_breakdown")


def deepspeed_config_keys(raw: dict[str, Any]) -> str | None:
    """For a DeepSpeed config given where a dsft config goes (guide 000's ``ds_config.json``): the dsft keys that
    ask for what it asks for (dsft writes the DeepSpeed config itself, into the run directory); None for any
    other mapping.

    >>> deepspeed_config_keys({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"},
    ...                        "offload_param": {"device": "cpu"}}, "bf16": {"enabled": True}})
    'train.distributed: deepspeed, train.zero_stage: 3, train.offload: optimizer+param, train.precision: bf16'
    >>> deepspeed_config_keys({"train": {"lr": 1e-5}}) is None
    True
    """
    if not any(key in raw for key in DEEPSPEED_KEYS):
        return None
    keys = ["train.distributed: deepspeed"]
    zero = raw.get("zero_optimization")
    if isinstance(zero, dict):
        if zero.get("stage") in (0, 1, 2, 3):
            keys.append(f"train.zero_stage: {zero['stage']}")
        offloaded = [part for part in ("optimizer", "param") if isinstance(zero.get(f"offload_{part}"), dict)
                     and zero[f"offload_{part}"].get("device", "none") != "none"]
        if offloaded:  # dsft offloads the parameters only with the optimizer states
            keys.append(f"train.offload: {'optimizer+param' if 'param' in offloaded else 'optimizer'}")
    for precision in ("bf16", "fp16"):
        if isinstance(raw.get(precision), dict) and raw[precision].get("enabled") is True:
            keys.append(f"train.precision: {precision}")
    return ", ".join(keys)


def _translated(meant: str | None) -> str | None:
    """A :data:`FOREIGN_KEYS` value as a section's key list shows it.

    >>> _translated("train.lr"), _translated(NO_KEY + "TensorBoard events go to tb/")
    ('train.lr', '(no dsft key: TensorBoard events go to tb/)')
    """
    if meant is not None and meant.startswith(NO_KEY):
        return f"(no dsft key: {meant[len(NO_KEY):]})"
    return meant

