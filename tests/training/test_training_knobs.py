"""The guides' optimizer, schedule and regularisation keys reach the Trainer and do what they say."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM

from dsft.config import load_config
from dsft.errors import ConfigError
from dsft.training.collators import PackedCollator
from dsft.training.preflight import config_notices
from dsft.models.dropout import dropout_overrides
from dsft.training.setup import build_training_arguments, environment_problems
from dsft.training import trainer as trainer_module
from dsft.training.trainer import DsftTrainer


def _model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))


def _trainer(tmp_path: Path, *overrides: str) -> DsftTrainer:
    cfg = load_config(None, list(overrides))
    model = _model()
    args = build_training_arguments(cfg, tmp_path, has_eval=False, model=model)
    return DsftTrainer(model=model, args=args, data_collator=PackedCollator(pad_id=0), loss_chunk_size=8)


def test_adamw_betas_and_epsilon_drive_the_update(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.adam_betas=[0.8, 0.95]", "train.adam_epsilon=1e-3", "train.lr=0.1",
                       "train.weight_decay=0")
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    param = next(p for p in trainer.model.parameters() if p.requires_grad)
    start = param.detach().clone()
    grads = [torch.full_like(param, 0.5), torch.full_like(param, -2.0)]
    m = v = torch.zeros_like(param)
    expected = start.clone()
    for step, grad in enumerate(grads, start=1):
        for p in trainer.model.parameters():
            p.grad = torch.zeros_like(p)
        param.grad = grad.clone()
        optimizer.step()
        # Adam by hand with beta1 0.8, beta2 0.95, eps 1e-3 (bias-corrected).
        m = 0.8 * m + 0.2 * grad
        v = 0.95 * v + 0.05 * grad * grad
        m_hat, v_hat = m / (1 - 0.8**step), v / (1 - 0.95**step)
        expected = expected - 0.1 * m_hat / (v_hat.sqrt() + 1e-3)
    torch.testing.assert_close(param.detach(), expected, atol=1e-6, rtol=1e-6)
    # The default betas give a different second step: the keys are not decorative.
    default = _trainer(tmp_path / "d", "train.lr=0.1").create_optimizer()
    assert default.param_groups[0]["betas"] == (0.9, 0.999) and default.param_groups[0]["eps"] == 1e-8


def test_adafactor_is_selectable_and_refuses_betas(tmp_path: Path) -> None:
    from transformers.optimization import Adafactor

    assert isinstance(_trainer(tmp_path, "train.optimizer=adafactor").create_optimizer(), Adafactor)
    with pytest.raises(ConfigError, match="train.adam_betas: applies to AdamW; adafactor has no betas"):
        load_config(None, ["train.optimizer=adafactor", "train.adam_betas=[0.9, 0.95]"])


def test_cosine_with_restarts_restarts_every_fifth_of_the_steps(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.lr_scheduler=cosine_with_restarts", "train.warmup_ratio=0", "train.lr=1.0")
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert [s for s in range(1, 100) if lrs[s] > lrs[s - 1]] == [20, 40, 60, 80]  # a restart each 20%
    assert all(math.isclose(lrs[s], 1.0) for s in (0, 20, 40, 60, 80))
    assert lrs[19] < 0.01
    with pytest.raises(ConfigError, match="train.lr_cycles: applies to lr_scheduler cosine_with_restarts, not cosine"):
        load_config(None, ["train.lr_cycles=3"])


def test_lr_cycles_written_with_a_scheduler_that_does_not_restart_is_said_not_applied() -> None:
    """Guide 001's period of 20% written as train.lr_cycles: 5 beside lr_scheduler: cosine: 5 was the default, so
    the refusal of lr_cycles under another scheduler could not see it, and the run decayed once without a word."""
    notices = config_notices(load_config(None, ["train.lr_cycles=5"]), world_size=1, cuda=False, deepspeed=False)
    assert notices == ["train.lr_cycles=5: not applied; train.lr_scheduler=cosine does not restart (set "
                       "train.lr_scheduler=cosine_with_restarts to use it, or remove the key)"]
    for quiet in ([], ["train.lr_scheduler=cosine_with_restarts", "train.lr_cycles=5"],
                  ["train.lr_scheduler=cosine_with_restarts"]):
        assert config_notices(load_config(None, quiet), world_size=1, cuda=False, deepspeed=False) == []
    assert load_config(None, ["train.lr_scheduler=cosine_with_restarts"]).train.restart_cycles == 5


def test_an_early_stopping_min_delta_without_patience_is_said_not_applied() -> None:
    """Guide 001's early_stopping_check(patience=3, delta=0.001) written as eval.early_stopping_min_delta alone:
    early stopping stays off (patience 0) and the delta was taken without a word."""
    notices = config_notices(load_config(None, ["eval.early_stopping_min_delta=0.001"]), world_size=1, cuda=False,
                             deepspeed=False)
    assert notices == ["eval.early_stopping_min_delta=0.001: not applied; early stopping is off, "
                       "eval.early_stopping_patience=0 (set it to the evaluations without improvement to wait, e.g. 3, "
                       "to use it, or remove the key)"]
    both = load_config(None, ["eval.early_stopping_min_delta=0.001", "eval.early_stopping_patience=3"])
    assert config_notices(both, world_size=1, cuda=False, deepspeed=False) == []


def test_environment_problems_name_the_key_and_the_fix() -> None:
    cfg = load_config(None, ["train.optimizer=adamw_8bit", "train.report_to=[tensorboard, wandb]"])
    problems = environment_problems(cfg, cuda=False, installed=lambda package: False)
    assert problems[0].startswith("train.optimizer: adamw_8bit needs a CUDA GPU")
    assert "use adamw_torch or adafactor" in problems[0]
    assert problems[1] == ("train.report_to: wandb is not installed (pip install wandb), or remove it from "
                           "train.report_to")
    assert environment_problems(cfg, cuda=True, installed=lambda package: True) == []


def test_trackers_go_to_transformers_report_to(tmp_path: Path) -> None:
    def args(*overrides: str):  # noqa: ANN202
        return build_training_arguments(load_config(None, list(overrides)), tmp_path, has_eval=False, model=_model())

    # tensorboard is dsft's own writer (RUN_DIR/tb), never a second one through transformers.
    assert args("train.report_to=[tensorboard, mlflow]").report_to == ["mlflow"]
    assert args().report_to in ([], ["none"])
    assert args("train.report_to=[]").report_to in ([], ["none"])


def test_dropout_applies_where_the_architecture_has_it(tiny_model_dir) -> None:
    from dsft.models.loading import load_model

    path = tiny_model_dir("tiny-deepseek-v3")
    model_config = AutoConfig.from_pretrained(str(path))
    cfg = load_config(None, ["model.attention_dropout=0.5"])
    overrides = dropout_overrides(cfg.model, model_config)
    assert overrides == {"attention_dropout": 0.5}
    model = load_model(path, dtype="float32", attn_implementation="eager", config_overrides=overrides)
    assert model.config.attention_dropout == 0.5
    ids = torch.arange(1, 17)[None]
    model.train()
    torch.manual_seed(0)
    first = model(input_ids=ids, use_cache=False).logits
    second = model(input_ids=ids, use_cache=False).logits
    assert not torch.allclose(first, second), "attention dropout is active in training mode"
    model.eval()
    assert torch.equal(model(input_ids=ids, use_cache=False).logits, model(input_ids=ids, use_cache=False).logits)
    with pytest.raises(ConfigError, match="model.hidden_dropout: the DeepseekV3 architecture has no hidden-state"):
        dropout_overrides(load_config(None, ["model.hidden_dropout=0.1"]).model, model_config)


def test_train_refuses_8bit_adamw_on_cpu_before_loading(run_cli, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for CPU-only machines")
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  optimizer: adamw_8bit\n", encoding="utf-8")
    code, out, err = run_cli(["train", str(config), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "train.optimizer: adamw_8bit needs a CUDA GPU" in out + err
    assert not (tmp_path / "run").exists()


def test_deepspeed_runs_the_configured_optimizer() -> None:
    from dsft.config import TrainConfig
    from dsft.training.distributed import deepspeed_config

    adamw = deepspeed_config(TrainConfig(adam_betas=(0.9, 0.95), adam_epsilon=1e-6, weight_decay=0.01), 2)
    assert adamw["optimizer"]["params"] == {"lr": 2e-4, "betas": [0.9, 0.95], "eps": 1e-6, "weight_decay": 0.01}
    # Other optimizers are the Trainer's own, handed to DeepSpeed: no optimizer block to override them.
    assert "optimizer" not in deepspeed_config(TrainConfig(optimizer="adafactor"), 2)
    with pytest.raises(ConfigError, match="train.optimizer=adafactor: DeepSpeed's optimizer offload"):
        deepspeed_config(TrainConfig(optimizer="adafactor", offload="optimizer"), 2)


def test_emulated_bf16_loss_matmuls_are_said_once_per_machine(tmp_path: Path, monkeypatch, caplog) -> None:
    """A fact of the CPU: under a launcher the first process of each node says it, not every process."""
    monkeypatch.setattr(trainer_module, "cpu_multiplies_bf16", lambda: False)
    model = _model()
    args = build_training_arguments(load_config(None, []), tmp_path, has_eval=False, model=model)
    for rank, local_rank, says in (("0", "0", 1), ("1", "1", 0), ("8", "0", 1)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.trainer"):
            DsftTrainer(model=model, args=args, loss_chunk_size=8, loss_dtype="bf16")
        assert sum("emulated" in r.getMessage() for r in caplog.records) == says, rank
