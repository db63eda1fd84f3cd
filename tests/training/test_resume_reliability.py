"""Resume that cannot drift: at or after max_steps, after a kill during the final save, with changed keys,
from damaged checkpoints, and with a metrics file that stays an exact record of the run.

One short LoRA run (4 steps, checkpoints at 2 and 4) is trained once per module; each test copies its
run directory, does to it what a crash, a disk or a user would, resumes, and compares the final weights
with the uninterrupted run's: they must be identical (0.0 difference on CPU).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.utils.deepspeed import DeepSpeedOptimizerWrapper, DeepSpeedSchedulerWrapper
from safetensors.torch import load_file

from dsft.config import load_config
from dsft.errors import DsftError
from dsft.training.run import run_training
from dsft.training.resume_lr import apply_resumed_learning_rate
from dsft.training.rundir import RunDir

MODEL = "tiny-r1-distill-qwen"


def write_data(path: Path, n: int = 24, offset: int = 0) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"Reservoir R{i} was completed in which year?"},
                          {"role": "assistant", "content": f"R{i} was completed in {1950 + (i * 7) % 50}."}]}
            for i in range(offset, offset + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_cfg(data: Path, *extra: str) -> Any:
    return load_config(None, [
        f"model.name_or_path={MODEL}", f"data.train=[{data}]", "data.val_ratio=0", "train.max_steps=4",
        "train.save_steps=2", "train.micro_batch_size=2", "train.max_seq_len=128", "train.lr=5e-3",
        "train.warmup_ratio=0", "train.lr_scheduler=constant", "train.logging_steps=1", "train.report_to=[]",
        "eval.steps=0", "eval.load_best=false", "lora.r=8", *extra,
    ])


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "adapter_model.safetensors"))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def checkpoint_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir) -> Path:
    tiny_model_dir(MODEL)
    base = tmp_path_factory.mktemp("finished")
    data = write_data(base / "d.jsonl")
    run_training(make_cfg(data), base / "run", progress=False)
    return base / "run"


def copy_run(finished: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


def data_of(run: Path) -> Path:
    return Path(load_config(run / "config.yaml").data.train[0])


def as_if_killed_during_final_save(run: Path) -> None:
    """What a kill -9 inside the final save leaves: no final/ (or a stale one), a partial staging dir, status running."""
    shutil.rmtree(run / "final")
    (run / ".final.staging").mkdir()
    (run / ".final.staging" / "adapter_model.safetensors").write_bytes(b"\x00" * 100)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))


def test_resume_at_max_steps_trains_nothing_and_keeps_final(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path)
    before = metrics(run)
    result = run_training(make_cfg(data_of(run)), run, resume="auto", progress=False)
    assert result.global_step == 4
    assert checkpoint_names(run) == ["checkpoint-2", "checkpoint-4"], "no step may be trained past max_steps"
    assert max_difference(weights(finished / "final"), weights(run / "final")) == 0.0
    assert metrics(run) == before
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_resume_after_max_steps_was_lowered_is_refused_and_the_checkpoint_step_ends_it(finished: Path,
                                                                                      tmp_path: Path) -> None:
    """Lowered below the checkpoint's step, max_steps trained nothing but was recorded as the run's: refused. The
    checkpoint's own step ends the run there, final/ from the checkpoint."""
    run = copy_run(finished, tmp_path)
    as_if_killed_during_final_save(run)
    with pytest.raises(DsftError, match="checkpoint-4 is at step 4, past the train.max_steps 3 asked for"):
        run_training(make_cfg(data_of(run), "train.max_steps=3"), run, resume="auto", progress=False)
    result = run_training(make_cfg(data_of(run), "train.max_steps=4"), run, resume="auto", progress=False)
    assert result.global_step == 4 and checkpoint_names(run) == ["checkpoint-2", "checkpoint-4"]
    assert max_difference(weights(finished / "final"), weights(run / "final")) == 0.0


def test_kill_during_final_save_then_resume_gives_identical_final(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path)
    as_if_killed_during_final_save(run)
    result = run_training(make_cfg(data_of(run)), run, resume="auto", progress=False)
    assert result.global_step == 4
    assert checkpoint_names(run) == ["checkpoint-2", "checkpoint-4"]
    assert not (run / ".final.staging").exists()
    assert max_difference(weights(finished / "final"), weights(run / "final")) == 0.0
    assert (run / "final" / "tokenizer_config.json").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_real_kill_during_final_save_then_resume(finished: Path, tmp_path: Path) -> None:
    """The same with a real SIGKILL inside the final save of a fresh `dsft train` process, resumed by the CLI."""
    config = tmp_path / "c.yaml"
    config.write_text((finished / "config.yaml").read_text())
    run = tmp_path / "run"
    killer = textwrap.dedent(f"""
        import os, signal, sys
        import dsft.training.run as run_module
        save = run_module.save_final_weights
        def killed_midway(trainer, tokenizer, template, run_dir):
            staging = run_dir.path / ".final.staging" if hasattr(run_dir, "path") else run_dir / ".final.staging"
            staging.mkdir(parents=True, exist_ok=True)
            (staging / "adapter_model.safetensors").write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
        run_module.save_final_weights = killed_midway
        from dsft.cli.app import main
        main(["train", {str(config)!r}, "--out", {str(run)!r}])
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", killer], capture_output=True, text=True, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert RunDir(run).status == "interrupted"  # recorded as running; its process is gone
    assert not (run / "final").exists() and checkpoint_names(run) == ["checkpoint-2", "checkpoint-4"]
    resumed = subprocess.run([sys.executable, "-m", "dsft", "train", str(config), "--out", str(run), "--resume", "auto"],
                             capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert checkpoint_names(run) == ["checkpoint-2", "checkpoint-4"]
    assert max_difference(weights(finished / "final"), weights(run / "final")) == 0.0


def test_a_changed_lr_and_schedule_length_are_applied_on_resume(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path)
    run_training(make_cfg(data_of(run), "train.max_steps=6", "train.lr=1e-3"), run, resume="auto", progress=False)
    rows = {r["step"]: r for r in metrics(run) if "lr" in r}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    assert [rows[s]["lr"] for s in (1, 2, 3, 4)] == [5e-3] * 4
    assert [rows[s]["lr"] for s in (5, 6)] == pytest.approx([1e-3, 1e-3], rel=1e-9)


def test_a_longer_cosine_schedule_trains_its_first_resumed_step(tmp_path: Path) -> None:
    """A cosine run stopped at its last step (lr 0 next) resumed with a larger train.max_steps trains step 3 at
    the rebuilt schedule's lr (a quarter of the peak), not at the old schedule's 0: the weights move."""
    data = write_data(tmp_path / "d.jsonl")
    cosine = ("train.lr_scheduler=cosine", "train.save_steps=2")
    run_training(make_cfg(data, "train.max_steps=2", *cosine), tmp_path / "run", progress=False)
    run_training(make_cfg(data, "train.max_steps=3", *cosine), tmp_path / "run", resume="auto", progress=False)
    assert max_difference(weights(tmp_path / "run" / "checkpoints" / "checkpoint-2"),
                          weights(tmp_path / "run" / "final")) > 0.0


def test_the_rebuilt_schedule_reaches_deepspeeds_optimizer_through_accelerates_wrappers() -> None:
    """Under DeepSpeed the Trainer's scheduler and optimizer are accelerate's wrappers: a DeepSpeed run resumed with
    a larger train.max_steps trained its first resumed step at the old schedule's lr (two-process ZeRO-2: the
    final weights equalled the checkpoint's)."""
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([weight], lr=1.0)
    old = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 2)  # 2 steps: lr 0 at step 2
    optimizer.step(), old.step(), optimizer.step(), old.step()
    saved_optimizer, saved_scheduler = optimizer.state_dict(), old.state_dict()
    optimizer = torch.optim.AdamW([weight], lr=1.0)
    longer = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 4)  # resumed with 4 steps
    optimizer.load_state_dict(saved_optimizer)
    longer.load_state_dict(saved_scheduler)
    assert optimizer.param_groups[0]["lr"] == 0.0  # what the checkpoint restored
    wrapped = DeepSpeedOptimizerWrapper(optimizer)
    assert apply_resumed_learning_rate(wrapped, DeepSpeedSchedulerWrapper(longer, [wrapped]), 1.0)
    assert optimizer.param_groups[0]["lr"] == 0.5 and longer.get_last_lr() == [0.5]


@pytest.mark.parametrize("change, named", [
    ("train.grad_accum=2", "train.grad_accum: 1 -> 2"),
    ("train.micro_batch_size=1", "train.micro_batch_size: 2 -> 1"),
    ("train.weight_decay=0.1", "train.weight_decay: 0.0 -> 0.1"),
    ("train.seed=7", "train.seed: 42 -> 7"),
])
def test_keys_that_change_what_a_step_is_are_refused_with_the_diff(
    finished: Path, tmp_path: Path, change: str, named: str,
) -> None:
    run = copy_run(finished, tmp_path)
    as_if_killed_during_final_save(run)
    with pytest.raises(DsftError) as refused:
        run_training(make_cfg(data_of(run), change), run, resume="auto", progress=False)
    assert named in str(refused.value)
    assert load_config(run / "config.yaml") == make_cfg(data_of(run)), "a refused resume must not rewrite config.yaml"


def test_data_edited_in_place_is_refused_and_moved_data_is_accepted(finished: Path, tmp_path: Path) -> None:
    run = copy_run(finished, tmp_path)
    edited = tmp_path / "edited.jsonl"
    write_data(edited)
    lines = edited.read_text().splitlines()
    lines[3] = lines[3].replace("was completed", "was finished")
    edited.write_text("\n".join(lines) + "\n")
    same_path = data_of(run)
    original = same_path.read_bytes()
    try:
        same_path.write_bytes(edited.read_bytes())
        with pytest.raises(DsftError) as refused:
            run_training(make_cfg(same_path), run, resume="auto", progress=False)
    finally:
        same_path.write_bytes(original)
    assert f"{same_path}: content changed since the run started" in str(refused.value)
    moved = tmp_path / "moved" / "d.jsonl"
    moved.parent.mkdir()
    shutil.copy(same_path, moved)
    result = run_training(make_cfg(moved), run, resume="auto", progress=False)
    assert result.global_step == 4


@pytest.mark.parametrize("damage", ["missing optimizer.pt", "missing scheduler.pt", "truncated adapter"])
def test_damaged_newest_checkpoint_falls_back_to_the_intact_one(finished: Path, tmp_path: Path, damage: str) -> None:
    run = copy_run(finished, tmp_path)
    as_if_killed_during_final_save(run)
    newest = run / "checkpoints" / "checkpoint-4"
    if damage.startswith("missing"):
        (newest / damage.split()[-1]).unlink()
    else:
        data = (newest / "adapter_model.safetensors").read_bytes()
        (newest / "adapter_model.safetensors").write_bytes(data[: len(data) // 3])
    result = run_training(make_cfg(data_of(run)), run, resume="auto", progress=False)
    assert result.global_step == 4
    info = json.loads((run / "run.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-2")
    assert any(line.startswith("checkpoint-4:") for line in info["resume_skipped"]), info["resume_skipped"]
    assert max_difference(weights(finished / "final"), weights(run / "final")) == 0.0


def test_metrics_is_an_exact_record_rebuilt_from_the_checkpoint(finished: Path, tmp_path: Path) -> None:
    """A kill after checkpoint-4 was renamed but before its metrics line was written, then two resumes."""
    run = copy_run(finished, tmp_path)
    original = metrics(run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[1] + "\n")  # lost 3-4, duplicated 2
    as_if_killed_during_final_save(run)
    run_training(make_cfg(data_of(run)), run, resume="auto", progress=False)
    run_training(make_cfg(data_of(run), "train.max_steps=6"), run, resume="auto", progress=False)
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for before, after in zip(original, rows[:4]):
        for key in ("step", "loss", "lr", "grad_norm", "tokens", "supervised_tokens"):
            assert after[key] == before[key], (key, before, after)


def test_an_exploding_update_never_reaches_a_checkpoint(tmp_path: Path, tiny_model_dir) -> None:
    """An update that leaves non-finite weights (as lr 1e39 did) is caught before the checkpoint is written."""
    from transformers import TrainerCallback

    class ExplodeAtStep1(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 1:
                with torch.no_grad():
                    trainable = [p for p in model.parameters() if p.requires_grad]
                    for parameter in trainable[: len(trainable) // 2]:
                        parameter.fill_(float("inf"))

    tiny_model_dir(MODEL)
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "train.save_steps=1", "train.max_steps=3")
    with pytest.raises(DsftError, match="non-finite") as stopped:
        run_training(cfg, tmp_path / "run", progress=False, extra_callbacks=[ExplodeAtStep1()])
    assert "step 1" in str(stopped.value)
    for checkpoint in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"):
        assert all(torch.isfinite(t).all() for t in weights(checkpoint).values()), checkpoint.name
    assert checkpoint_names(tmp_path / "run") == []
    assert not (tmp_path / "run" / "final").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_a_non_finite_gradient_stops_before_the_optimizer_step(tmp_path: Path, tiny_model_dir) -> None:
    from transformers import TrainerCallback

    class PoisonGradientAtStep3(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kw):
            if state.global_step == 2:
                for parameter in model.parameters():
                    if parameter.requires_grad:
                        parameter.register_hook(lambda grad: grad * float("inf"))
                        break

    tiny_model_dir(MODEL)
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "train.save_steps=1", "train.max_grad_norm=0")
    with pytest.raises(DsftError, match="gradient norm became") as stopped:
        run_training(cfg, tmp_path / "run", progress=False, extra_callbacks=[PoisonGradientAtStep3()])
    assert "step 3" in str(stopped.value)
    assert checkpoint_names(tmp_path / "run") == ["checkpoint-1", "checkpoint-2"]


def test_a_run_whose_gradients_stay_zero_is_flagged(tmp_path: Path, tiny_model_dir) -> None:
    from transformers import TrainerCallback

    tiny_model_dir(MODEL)
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "train.max_steps=4", "train.zero_grad_steps=3")

    def no_gradient(trainer_model: Any) -> None:
        for parameter in trainer_model.parameters():
            if parameter.requires_grad:
                parameter.register_hook(lambda grad: torch.zeros_like(grad))

    class ZeroFromStart(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            no_gradient(model)

    result = run_training(cfg, tmp_path / "run", progress=False, extra_callbacks=[ZeroFromStart()])
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert result.global_step == 4
    assert info["status"] == "stalled"
    assert any("gradient norm was 0" in flag for flag in info["flags"]), info


def test_a_full_disk_at_a_checkpoint_is_one_message_and_keeps_the_last_good_one(
    tmp_path: Path, tiny_model_dir, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    real_usage = shutil.disk_usage
    run = tmp_path / "run"

    def full_after_the_first_checkpoint(path: Any) -> Any:
        return usage(10, 10, 0) if (run / "checkpoints" / "checkpoint-1").is_dir() else real_usage(path)

    monkeypatch.setattr(shutil, "disk_usage", full_after_the_first_checkpoint)
    tiny_model_dir(MODEL)
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "train.save_steps=1", "train.max_steps=3")
    with pytest.raises(DsftError, match="needs about") as full:
        run_training(cfg, run, progress=False)
    assert f"{run / 'checkpoints'}: writing checkpoint-2 needs about" in str(full.value)
    assert "0 B free" in str(full.value)
    assert checkpoint_names(run) == ["checkpoint-1"] and not (run / "checkpoints" / ".staging").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "failed"


def test_a_full_disk_during_the_final_save_is_one_message_and_leaves_no_staging(
    tmp_path: Path, tiny_model_dir, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    from transformers import PreTrainedTokenizerBase

    save_pretrained = PreTrainedTokenizerBase.save_pretrained

    def disk_full_in_final(self: Any, directory: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(directory).name != ".final.staging":
            return save_pretrained(self, directory, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(directory) / "tokenizer.json"))

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full_in_final)
    tiny_model_dir(MODEL)
    run = tmp_path / "run"
    with pytest.raises(DsftError, match="no space left on the device") as full:
        run_training(make_cfg(write_data(tmp_path / "d.jsonl"), "train.max_steps=2"), run, progress=False)
    assert str(full.value).startswith(f"{run / 'final'}: no space left") and "needs about" in str(full.value)
    assert not (run / ".final.staging").exists() and not (run / "final").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert checkpoint_names(run) == ["checkpoint-2"], "the last checkpoint stays, for --resume auto"


def test_resume_auto_without_a_checkpoint_says_training_starts_from_step_0(tmp_path: Path, tiny_model_dir,
                                                                           caplog) -> None:
    """A mistyped --out with --resume auto trained from scratch without a word."""
    tiny_model_dir(MODEL)
    data = write_data(tmp_path / "d.jsonl", n=8)
    with caplog.at_level(logging.WARNING, logger="dsft.training.run"):
        run_training(make_cfg(data, "train.max_steps=1"), tmp_path / "runs-typo", resume="auto", progress=False)
    assert "--resume auto: no checkpoint in" in caplog.text and "starts from step 0" in caplog.text


def test_a_resume_below_the_checkpoint_step_is_refused_writing_nothing(tmp_path: Path, tiny_model_dir) -> None:
    """--resume auto with train.max_steps below the checkpoint's step trained nothing, yet rewrote config.yaml
    with the lower max_steps (the dashboard showed step 4 of 2, and the run no longer recorded what produced it)."""
    tiny_model_dir(MODEL)
    data = write_data(tmp_path / "d.jsonl", n=8)
    run = tmp_path / "run"
    run_training(make_cfg(data), run, progress=False)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(DsftError) as refused:
        run_training(make_cfg(data, "train.max_steps=2"), run, resume="auto", progress=False)
    assert str(refused.value).startswith("--resume: checkpoint-4 is at step 4, past the train.max_steps 2 asked "
                                         "for"), refused.value
    assert "pass train.max_steps=4 to end the run at this checkpoint" in str(refused.value)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    run_training(make_cfg(data), run, resume="auto", progress=False)  # the run's own max_steps: final/ as it was
    assert RunDir(run).config.train.max_steps == 4


def test_a_resume_whose_epochs_end_before_the_checkpoint_is_refused_writing_nothing(tmp_path: Path,
                                                                                    tiny_model_dir) -> None:
    """With max_steps from the epochs, lowering train.epochs on --resume was not compared: the run finished from a
    checkpoint past the steps the epochs ask for, and config.yaml recorded a schedule that did not produce it."""
    tiny_model_dir(MODEL)
    data = write_data(tmp_path / "d.jsonl", n=8)
    run = tmp_path / "run"
    by_epochs = ("train.max_steps=-1", "train.packing=false")  # 8 examples, 2 a step: 4 steps an epoch
    run_training(make_cfg(data, *by_epochs, "train.epochs=2", "train.save_steps=3"), run, progress=False)
    assert checkpoint_names(run) == ["checkpoint-6", "checkpoint-8"]
    assert json.loads((run / "run.json").read_text())["steps_per_epoch"] == 4
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for epochs, advice in [("1", "pass train.epochs=2 to end the run at this checkpoint, or more to go on"),
                           ("1.5", "pass train.epochs=2 to end the run at this checkpoint, or more to go on")]:
        with pytest.raises(DsftError) as refused:
            run_training(make_cfg(data, *by_epochs, f"train.epochs={epochs}"), run, resume="auto", progress=False)
        steps = int(float(epochs) * 4)
        assert str(refused.value).startswith(f"--resume: checkpoint-8 is at step 8, past the {steps} steps "
                                             f"train.epochs {epochs} asks for (4 steps an epoch)"), refused.value
        assert advice in str(refused.value)
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    with pytest.raises(DsftError, match=r"checkpoint-6 is at step 6, past the 4 steps train.epochs 1 asks for .*"
                                        r"pass train.epochs=2 or more to go on, or train.max_steps=6 to end"):
        run_training(make_cfg(data, *by_epochs, "train.epochs=1"), run, resume=str(run / "checkpoints" /
                                                                                  "checkpoint-6"), progress=False)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # A run recorded before run.json held the steps an epoch is refused once the Trainer has counted them.
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k != "steps_per_epoch"}))
    with pytest.raises(DsftError, match="checkpoint-8 is at step 8, past the 4 steps train.epochs 1 asks for"):
        run_training(make_cfg(data, *by_epochs, "train.epochs=1"), run, resume="auto", progress=False)
    result = run_training(make_cfg(data, *by_epochs, "train.epochs=2"), run, resume="auto", progress=False)
    assert result.global_step == 8 and RunDir(run).config.train.epochs == 2


def test_a_resume_with_changed_settings_names_each_change(tmp_path: Path, tiny_model_dir, caplog) -> None:
    """A resume applies a changed schedule, cadence or eval setting (the resume contract) and said nothing: run
    without the --set flags of the first start, a 40-step run ended at step 12, and only transformers' own
    'arguments do not match the ones in the trainer_state.json' line hinted at it."""
    tiny_model_dir(MODEL)
    data = write_data(tmp_path / "d.jsonl", n=8)
    run = tmp_path / "run"
    run_training(make_cfg(data, "train.max_steps=2"), run, progress=False)
    with caplog.at_level(logging.WARNING, logger="dsft.training.run"):
        run_training(make_cfg(data, "train.max_steps=3", "train.save_steps=3"), run, resume="auto", progress=False)
    notice = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("--resume"))
    assert notice == ("--resume: continuing checkpoint-2 with 2 changed setting(s), applied from the next step: "
                      "train.max_steps: 2 -> 3; train.save_steps: 2 -> 3 (the previous config is kept as "
                      "config.before-TIME.yaml)")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsft.training.run"):  # resumed as it is: nothing to say
        run_training(make_cfg(data, "train.max_steps=3", "train.save_steps=3"), run, resume="auto", progress=False)
    assert "changed setting" not in caplog.text
