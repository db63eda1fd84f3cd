"""The run guards on a plain ``transformers.Trainer`` subclass (not the SFT trainer): NaN stop, atomic
checkpoints, token counting. What a DPO/GRPO trainer gets by mixing in :class:`RunGuards`."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments

from dsft.config import load_config
from dsft.training.checkpointing import list_checkpoints, resolve_resume
from dsft.training.guards import NonFiniteLossError, RunGuards, non_finite_parameters, with_run_guards
from dsft.training.monitoring import TokenCounter, monitoring_callbacks, read_metrics
from dsft.training.setup import build_training_arguments
from dsft.training.trainer import DsftTrainer

from host_reads import HostReads


class PlainLossTrainer(Trainer):
    """The model's own loss; turns it into NaN from optimizer step ``nan_from_step`` (1-based) on."""

    nan_from_step: int | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.nan_from_step is not None and self.state.global_step + 1 >= self.nan_from_step:
            loss = loss * float("nan")
        return loss


class GuardedPlainTrainer(RunGuards, PlainLossTrainer):
    pass


def _model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))


def _examples(n: int = 12) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(1)
    rows = []
    for i in range(n):
        ids = torch.randint(0, 300, (6 + i % 3,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [-100, -100] + ids[2:], "attention_mask": [1] * len(ids)})
    return rows


def _collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    batch = {}
    for key, pad in (("input_ids", 0), ("labels", -100), ("attention_mask", 0)):
        batch[key] = torch.tensor([r[key] + [pad] * (width - len(r[key])) for r in rows])
    return batch


def _trainer(cls: type, tmp_path: Path, **kwargs) -> Trainer:  # noqa: ANN003
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), per_device_train_batch_size=2, max_steps=5,
                             save_steps=1, learning_rate=1e-2, report_to=[], use_cpu=True, disable_tqdm=True,
                             logging_steps=1, save_strategy="steps")
    return cls(model=_model(), args=args, train_dataset=_examples(), data_collator=_collate, **kwargs)


def test_plain_trainer_subclass_is_not_the_sft_trainer() -> None:
    assert not issubclass(GuardedPlainTrainer, DsftTrainer)


def test_nan_stops_before_the_step_and_the_newest_checkpoint_is_the_last_good_one(tmp_path: Path) -> None:
    trainer = _trainer(GuardedPlainTrainer, tmp_path)
    trainer.nan_from_step = 3
    with pytest.raises(NonFiniteLossError, match="optimizer step 3"):
        trainer.train()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["checkpoint-1", "checkpoint-2"]
    # The NaN gradient never reached the weights: they are finite and equal checkpoint-2's.
    saved = Qwen2ForCausalLM.from_pretrained(str(tmp_path / "checkpoints" / "checkpoint-2"))
    for (name, now), then in zip(trainer.model.named_parameters(), saved.parameters()):
        assert torch.isfinite(now).all(), name
        torch.testing.assert_close(now, then, msg=name)


def test_without_guards_the_nan_goes_into_the_weights(tmp_path: Path) -> None:
    """The control: the same trainer without RunGuards trains through the NaN."""
    trainer = _trainer(PlainLossTrainer, tmp_path)
    trainer.nan_from_step = 3
    trainer.train()
    assert not all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.parametrize("guarded", [True, False])
def test_a_save_killed_midway_leaves_no_checkpoint_directory(tmp_path: Path, monkeypatch, guarded: bool) -> None:
    """Only with the guards: a crash while checkpoint-2 is written leaves checkpoint-1 as the newest."""
    trainer = _trainer(GuardedPlainTrainer if guarded else PlainLossTrainer, tmp_path)
    real_save = Trainer._save_optimizer_and_scheduler

    def crash_at_step_two(self, output_dir):  # noqa: ANN001, ANN202
        if self.state.global_step == 2:
            raise KeyboardInterrupt("killed while saving")
        return real_save(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", crash_at_step_two)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    if guarded:
        assert names == ["checkpoint-1"]
        assert resolve_resume("auto", tmp_path / "checkpoints").checkpoint.name == "checkpoint-1"
        assert not (tmp_path / "checkpoints" / ".staging").exists()
    else:
        assert names == ["checkpoint-1", "checkpoint-2"]  # a half-written checkpoint-2 that resume would pick


def test_tokens_are_counted_and_logged_through_the_monitoring_callbacks(tmp_path: Path) -> None:
    counter = TokenCounter()
    seen: list[dict[str, torch.Tensor]] = []

    class Recording(with_run_guards(PlainLossTrainer)):  # type: ignore[misc]
        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN201
            seen.append(inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    trainer = _trainer(Recording, tmp_path, token_counter=counter,
                       callbacks=monitoring_callbacks(tmp_path, counter, progress=False))
    trainer.train()
    assert len(seen) == 5
    assert counter.tokens == sum(int(b["attention_mask"].sum()) for b in seen)
    assert counter.supervised_tokens == sum(int(b["labels"].ne(-100).sum()) for b in seen)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and rows[-1]["tokens"] == counter.tokens
    assert (tmp_path / "loss.png").is_file() and list((tmp_path / "tb").iterdir())


class _StubStep:
    """The Trainer's part the guards wrap: a micro-batch's loss is the batch's ``loss`` entry."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.state = SimpleNamespace(global_step=0)
        self.args = SimpleNamespace(world_size=1, device=torch.device("cpu"))
        self.logged: list[dict] = []

    def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN201
        return inputs["loss"]

    def log(self, logs, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        self.logged.append(logs)


class _GuardedStub(RunGuards, _StubStep):
    pass


def _micro_batches(losses: list[float]) -> list[dict]:
    packed = {"input_ids": torch.ones(1, 6, dtype=torch.long), "num_real_tokens": 5,
              "labels": torch.tensor([[-100, -100, 3, 4, 5, -100]])}
    padded = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
              "labels": torch.tensor([[-100, 2, 3], [-100, 5, -100]])}
    return [{**(packed if i % 2 == 0 else padded), "loss": torch.tensor(loss, requires_grad=True) * 1.0}
            for i, loss in enumerate(losses)]


def test_a_micro_batch_reads_nothing_back_and_the_step_reads_its_counts_and_losses_once() -> None:
    """On a GPU a read per micro-batch (the loss, a token count) makes the host wait for the backward before
    it can queue the next micro-batch; the guards read the losses back once per step, before the optimizer
    step, and the token counts once per log."""
    counter = TokenCounter()
    trainer = _GuardedStub(token_counter=counter)
    with HostReads() as reads:
        for inputs in _micro_batches([1.0, 2.0, 3.0]):
            trainer.training_step(None, inputs)
    assert reads.names == []
    trainer.check_grad_norm(torch.tensor(1.5))
    trainer.log({"loss": 2.0})
    assert (counter.tokens, counter.supervised_tokens) == (5 + 5 + 5, 3 + 3 + 3)
    assert trainer.logged[-1]["supervised_tokens"] == 9


def test_a_non_finite_micro_batch_loss_stops_the_run_before_the_optimizer_step() -> None:
    trainer = _GuardedStub(token_counter=TokenCounter())
    for inputs in _micro_batches([1.0, float("nan"), 2.0]):
        trainer.training_step(None, inputs)  # the losses are not read back here
    with pytest.raises(NonFiniteLossError, match="training loss became nan at optimizer step 1"):
        trainer.check_grad_norm(torch.tensor(1.0))
    trainer.check_grad_norm(torch.tensor(1.0))  # the next step starts with no losses of its own


def _rank_of_two(rank: int, losses: list[float], other_rank_verdicts: list[float], monkeypatch) -> str:
    """Rank ``rank`` of a two-process job checks its step's ``losses``; the collective adds what the other rank put
    in (its first non-finite loss in its slot, 0 elsewhere). The error it stops with, or ``""``."""
    trainer = _GuardedStub(token_counter=TokenCounter())
    trainer.args = SimpleNamespace(world_size=2, process_index=rank, device=torch.device("cpu"))
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor: tensor.add_(torch.tensor(other_rank_verdicts)))
    for inputs in _micro_batches(losses):
        trainer.training_step(None, inputs)
    try:
        trainer.check_grad_norm(torch.tensor(1.0))
    except NonFiniteLossError as exc:
        return str(exc)
    return ""


def test_a_non_finite_loss_on_one_rank_stops_every_rank_with_the_same_message(monkeypatch) -> None:
    """A rank's loss is its own (the Trainer does not reduce it): rank 0's finite losses would let it go on to
    the optimizer step while rank 1 stopped, each saying what it saw; the ranks' verdicts are gathered, so every
    rank stops at the same step and the error is said once per node."""
    rank_0 = _rank_of_two(0, [1.0, 2.0], [0.0, float("nan")], monkeypatch)
    rank_1 = _rank_of_two(1, [1.0, float("nan")], [0.0, 0.0], monkeypatch)
    assert rank_0.startswith("training loss became nan on rank 1 at optimizer step 1;"), rank_0
    assert rank_0 == rank_1
    both = _rank_of_two(0, [float("inf")], [0.0, float("nan")], monkeypatch)
    assert both.startswith("training loss became inf on ranks 0, 1 at optimizer step 1;"), both
    assert _rank_of_two(0, [1.0], [0.0, 0.0], monkeypatch) == ""
    assert NonFiniteLossError.job_wide


@pytest.mark.parametrize(("applied", "said"), [
    (False, "DeepSpeed skipped that step and changed no weight, so no checkpoint"),
    (True, "DeepSpeed had already applied that step (it steps inside the last micro-batch's backward, and at this "
           "ZeRO stage and precision it does not skip a step whose gradients overflow): the weights it left may not "
           "be finite, and the run stopped before saving them, so no checkpoint"),
])
def test_under_deepspeed_a_non_finite_gradient_norm_says_whether_the_engine_applied_the_step(applied: bool,
                                                                                             said: str) -> None:
    """DeepSpeed steps inside the last micro-batch's backward, so its norm is read after its step, which it skips
    only where it checks for overflow (ZeRO-3, ZeRO-1/2 in bf16 or fp16): the message said "the run stopped before
    that step changed any weight" also under ZeRO-0, which had applied it."""
    trainer = _GuardedStub(token_counter=TokenCounter())
    trainer.is_deepspeed_enabled = True
    trainer.model_wrapped = SimpleNamespace(was_step_applied=lambda: applied)  # DeepSpeedEngine's own verdict
    with pytest.raises(NonFiniteLossError) as info:
        trainer.check_grad_norm(torch.tensor(float("nan")))
    assert str(info.value).startswith(f"gradient norm became nan at optimizer step 1; {said}"), info.value


def test_the_stall_flag_is_said_by_the_main_process_and_recorded_by_every_rank(monkeypatch, caplog) -> None:
    """The gradient norm is the whole job's (gradients are all-reduced), so every rank counts the same streak."""
    for rank, says in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        trainer = _GuardedStub(token_counter=TokenCounter(), zero_grad_steps=2)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.guards"):
            trainer.check_grad_norm(torch.tensor(0.0))
            trainer.check_grad_norm(torch.tensor(0.0))
        assert len(trainer.flags) == 1 and "the gradient norm was 0 for 2 steps" in trainer.flags[0]
        assert sum("the gradient norm was 0" in r.getMessage() for r in caplog.records) == says


def test_training_turns_off_the_trainers_per_micro_batch_nan_filter(tmp_path: Path) -> None:
    """transformers' ``logging_nan_inf_filter`` reads every micro-batch's loss back; the guards stop on a
    non-finite loss anyway."""
    args = build_training_arguments(load_config(None, []), tmp_path, has_eval=False, model=_model())
    assert args.logging_nan_inf_filter is False


def test_the_nan_message_names_the_last_good_checkpoint_or_says_there_is_none(tmp_path: Path) -> None:
    """A learning rate typed as 3e5 blows up at step 2, long before the first checkpoint: 'the newest checkpoint
    is the last good one' sent the user looking for a checkpoint that was never written."""
    trainer = _trainer(GuardedPlainTrainer, tmp_path / "a")
    trainer.nan_from_step = 3
    with pytest.raises(NonFiniteLossError) as stopped:
        trainer.train()
    assert "checkpoint-2 (the newest checkpoint) is the last good one" in str(stopped.value)
    trainer = _trainer(GuardedPlainTrainer, tmp_path / "b")
    trainer.args.save_steps = 100
    trainer.nan_from_step = 3
    with pytest.raises(NonFiniteLossError) as stopped:
        trainer.train()
    text = str(stopped.value)
    assert "no checkpoint had been written yet" in text and "last good one" not in text and "--resume" not in text


def test_a_zero3_partitioned_weight_is_checked_in_this_rank_s_share() -> None:
    """Under ZeRO-3 a parameter is empty outside its module's forward (its share lives in ``ds_tensor``): the check
    before final/ is written used to read the empty tensor and pass a NaN weight."""
    layer = torch.nn.Linear(2, 2)
    layer.weight.ds_tensor = torch.tensor([float("nan"), 1.0])  # as DeepSpeed's partitioning leaves it
    layer.weight.data = torch.empty(0)
    layer.bias.ds_tensor = torch.tensor([0.5])
    layer.bias.data = torch.empty(0)
    assert non_finite_parameters(layer) == ["weight"]
