"""DPO on TRL's DPOTrainer with dsft-rendered pairs: the loss TRL optimises is the DPO loss of dsft's renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from dsft.config import load_config
from dsft.data.preference import parse_preference
from dsft.models.loading import load_tokenizer
from dsft.templates import get_template
from dsft.training.monitoring import TokenCounter
from dsft.training.objectives import build_objective_trainer
from dsft.training.examples import TokenizedSplit
from dsft.training.preference_examples import render_split
from dsft.training.setup import build_model

from preference_pairs import pair_rows

MODEL = "tiny-r1-distill-qwen"


def sequence_logp(model: torch.nn.Module, ids: list[int], supervised: list[bool]) -> torch.Tensor:
    """Sum of log p(token | prefix) over the supervised tokens: a plain forward and log-softmax, no TRL."""
    logits = model(torch.tensor([ids]), use_cache=False).logits[0].float()
    logps = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return logps[torch.tensor(supervised[1:])].sum()


class LoggedLosses(TrainerCallback):
    """The training losses the Trainer logs, in order."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:  # noqa: ANN001 - TrainerCallback API
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


@pytest.mark.slow
def test_dpo_loss_equals_independent_computation(tmp_path: Path, tiny_model_dir) -> None:
    model_dir = tiny_model_dir(MODEL)
    beta = 0.3
    cfg = load_config(None, [
        f"model.name_or_path={MODEL}", "train.objective=dpo", f"preference.beta={beta}", "train.max_steps=1",
        "train.micro_batch_size=4", "train.lr=1e-3", "train.warmup_ratio=0", "lora.r=4", "train.max_seq_len=256",
    ])
    tokenizer = load_tokenizer(model_dir)
    template = get_template("deepseek-r1")
    records = [parse_preference(r, "pair") for r in pair_rows()]
    split = render_split(records, template, tokenizer, None, cfg.train.max_seq_len)
    assert len(split.examples) == 4
    torch.manual_seed(0)
    model = build_model(cfg, model_dir, tokenizer, adapter=False)
    trainer = build_objective_trainer(cfg, tmp_path, model, tokenizer, {"train": split, "val": TokenizedSplit([])},
                                      [], TokenCounter())
    # A policy that differs from the reference (as after some training): random LoRA B matrices.
    policy = trainer.model
    # TRL wrapped it with LoRA; every adapted layer skips peft's redundant input cast under autocast.
    adapted = [m for m in policy.modules() if hasattr(m, "lora_A") and hasattr(m, "_cast_input_dtype")]
    assert adapted and all("_cast_input_dtype" in vars(m) and "forward" in vars(m) for m in adapted)  # + lean LoRA
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    policy.eval()
    # Independent: each side rendered as SFT renders a trained last turn, scored by plain forwards of the
    # policy and of the base model (the adapter disabled).
    margins = []
    with torch.no_grad():
        for record in records:
            logratios = []
            for side in (record.chosen, record.rejected):
                rendered = template.render_train(record.conversation(side), tokenizer, masking="last", thinking=None)
                pi = sequence_logp(policy, rendered.input_ids, rendered.supervised)
                with policy.disable_adapter():
                    ref = sequence_logp(policy, rendered.input_ids, rendered.supervised)
                logratios.append(pi - ref)
            margins.append(logratios[0] - logratios[1])
    expected = float(torch.stack([-F.logsigmoid(beta * m) for m in margins]).mean())
    assert abs(expected - torch.log(torch.tensor(2.0)).item()) > 1e-3  # the check below is not the trivial log 2

    logged = LoggedLosses()
    trainer.add_callback(logged)
    trainer.train()
    assert logged.losses[0] == pytest.approx(expected, rel=1e-4)


def test_chatml_pairs_end_at_eos(tmp_path: Path) -> None:
    """With a model's own ChatML template (template: hf) the completion ends at <|im_end|>; the newline the
    template writes after it belongs to neither side."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    backend = Tokenizer(models.WordLevel(vocab={**vocab, **{c: i + 3 for i, c in enumerate(
        "abcdefghijklmnopqrstuvwxyz?! \n")}}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", unk_token="<unk>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    template = get_template("hf", tokenizer)
    record = parse_preference({"prompt": "hi?", "chosen": "yes", "rejected": "no"}, "pair")
    example = render_split([record], template, tokenizer, None, None).examples[0]
    text = {key: "".join(tokenizer.convert_ids_to_tokens(ids)) for key, ids in example.items()}
    assert text["prompt_ids"] == "<|im_start|>user\nhi?<|im_end|>\n<|im_start|>assistant\n"
    assert (text["chosen_ids"], text["rejected_ids"]) == ("yes<|im_end|>", "no<|im_end|>")
