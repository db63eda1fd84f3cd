"""A checkpoint resumed by a job that saves its optimizer state another way, or by one of another size.

DeepSpeed partitions ZeRO optimizer state over the processes that saved it, and refused to load it into another
number of them with a traceback on every rank (ZeRORuntimeException); transformers' Trainer without DeepSpeed
found no optimizer.pt in a DeepSpeed checkpoint and started a new optimizer and learning-rate schedule without a
word. dsft converts such a checkpoint to DeepSpeed's universal format (resumes exactly), and refuses a resume
whose run cannot read the state at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torchrun_helpers import dsft_in_processes

from dsft.errors import DsftError
from dsft.training.resume_layout import UNIVERSAL_DIR, check_resume_layout, deepspeed_state


def _checkpoint(root: Path, ranks: int = 0, zero3: bool = False, torch_optimizer: bool = False,
                bf16: bool = False) -> Path:
    """A checkpoint directory with the optimizer files of a layout (empty files: only their names are read)."""
    checkpoint = root / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    if torch_optimizer:
        (checkpoint / "optimizer.pt").write_bytes(b"")
        return checkpoint
    (checkpoint / "latest").write_text("global_step5")
    folder = checkpoint / "global_step5"
    folder.mkdir()
    (folder / "mp_rank_00_model_states.pt").write_bytes(b"")
    for rank in range(ranks):
        (folder / f"{'bf16_' if bf16 else ''}zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
        if zero3:
            (folder / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt").write_bytes(b"")
    return checkpoint


@pytest.mark.parametrize(("layout", "strategy", "world", "stage", "converted"), [
    ({"ranks": 2}, "deepspeed", 2, 2, False),  # as saved: DeepSpeed reads it itself
    ({"ranks": 2}, "deepspeed", 3, 2, True),  # another number of processes
    ({"ranks": 2}, "deepspeed", 1, 2, True),
    ({"ranks": 2}, "deepspeed", 2, 3, True),  # ZeRO-2 partitions read by ZeRO-3
    ({"ranks": 2, "zero3": True}, "deepspeed", 2, 3, False),
    ({"ranks": 0}, "deepspeed", 4, 0, False),  # ZeRO-0: the optimizer state is whole
    ({"ranks": 2, "bf16": True}, "deepspeed", 2, 0, False),  # bf16 partitions, no stage recorded: ZeRO-0's too
    ({"ranks": 2, "bf16": True}, "deepspeed", 2, 2, False),  # ... or ZeRO-1/2's: left to DeepSpeed either way
    ({"torch_optimizer": True}, "ddp", 4, 2, False),  # torch's own: the Trainer reads it at any size
])
def test_which_resumes_go_through_the_universal_checkpoint(tmp_path: Path, layout: dict, strategy: str, world: int,
                                                          stage: int, converted: bool) -> None:
    assert check_resume_layout(_checkpoint(tmp_path, **layout), strategy, world, stage) is converted


@pytest.mark.parametrize(("layout", "strategy", "world", "message"), [
    ({"ranks": 2}, "none", 1, "saved by DeepSpeed (global_step5/, partitioned over 2 processes), which this run (one "
                           "process without DeepSpeed) cannot read: it would start a new optimizer and restart the "
                           "learning-rate schedule"),
    ({"ranks": 2}, "ddp", 2, "which this run (DDP over 2 processes) cannot read"),
    ({"torch_optimizer": True}, "deepspeed", 2, "its optimizer state is torch's (optimizer.pt, saved without DeepSpeed), "
                                            "which DeepSpeed cannot read"),
])
def test_a_resume_that_cannot_read_the_optimizer_state_is_refused(tmp_path: Path, layout: dict, strategy: str,
                                                                 world: int, message: str) -> None:
    with pytest.raises(DsftError) as info:
        check_resume_layout(_checkpoint(tmp_path, **layout), strategy, world, 2)
    assert message in str(info.value), info.value


@pytest.mark.parametrize(("layout", "stage", "message"), [
    # ZeRO-2 partitions read by a ZeRO-0 run: DeepSpeed stopped after the model loaded, a traceback on every rank
    # (AttributeError: 'NoneType' object has no attribute 'copy', the optimizer state it looked for in the model file)
    ({"ranks": 2}, 0, "its optimizer state is partitioned by DeepSpeed ZeRO (global_step5/, over 2 processes), "
                      "which a run with train.zero_stage 0 cannot read"),
    # ZeRO-0's whole optimizer state read by a ZeRO-2 run: it stopped after the model loaded on 'No such file'
    # naming a partition file the checkpoint never had
    # ZeRO-3 in bf16 read by a ZeRO-0 run: converted to a universal checkpoint, from which ZeRO-0 loads no
    # optimizer state (it started a new one without a word)
    ({"ranks": 2, "zero3": True, "bf16": True}, 0, "its optimizer state is partitioned by DeepSpeed ZeRO "
                                                   "(global_step5/, over 2 processes)"),
    ({"ranks": 0}, 2, "its optimizer state was saved by DeepSpeed without ZeRO (train.zero_stage 0: global_step5/"
                      "mp_rank_00_model_states.pt holds it whole), which a run with train.zero_stage 2 cannot read"),
])
def test_a_resume_across_zero_stage_0_and_a_partitioning_stage_is_refused(tmp_path: Path, layout: dict, stage: int,
                                                                         message: str) -> None:
    for world in (1, 2):
        with pytest.raises(DsftError) as info:
            check_resume_layout(_checkpoint(tmp_path / str(world), **layout), "deepspeed", world, stage)
        assert message in str(info.value), info.value


def _bf16_checkpoint_of_a_run(root: Path, zero_stage: int | str, distributed: str = "deepspeed") -> Path:
    """checkpoint-5 of a dsft run saved in bf16 by two processes (bf16_zero_pp_rank_* alone, as DeepSpeed writes at
    ZeRO-1/2, and at ZeRO-0 in the versions whose bf16 optimizer runs without ZeRO), its config.yaml recording
    ``train.zero_stage``."""
    run = root / "run"
    checkpoint = _checkpoint(run / "checkpoints", ranks=2, bf16=True)
    (run / "run.json").write_text("{}\n")
    (run / "config.yaml").write_text(f"train:\n  distributed: {distributed}\n  zero_stage: {zero_stage}\n")
    return checkpoint


def _recorded_by_deepspeed(checkpoint: Path, zero_stage: int | None) -> None:
    """DeepSpeed's model-states file with the stage in ``ds_config``, as its engine saves it (None: no
    zero_optimization block, DeepSpeed's ZeRO-0)."""
    torch = pytest.importorskip("torch")
    zero = {} if zero_stage is None else {"zero_optimization": {"stage": zero_stage, "overlap_comm": True}}
    torch.save({"module": {"lm_head.weight": torch.zeros(4, 2, dtype=torch.bfloat16)}, "optimizer": None,
                "dp_world_size": 2, "ds_config": {"train_batch_size": 4, "bf16": {"enabled": True}, **zero},
                "ds_version": "0.19.8"}, checkpoint / "global_step5" / "mp_rank_00_model_states.pt")


@pytest.mark.parametrize(("saved", "stage", "message"), [
    # A ZeRO-2 checkpoint in bf16 read by ZeRO-0: DeepSpeed stopped once the model had loaded, with a traceback on
    # every rank (fused_optimizer load_state_dict: TypeError: 'NoneType' object is not subscriptable)
    (2, 0, "its optimizer state is partitioned by DeepSpeed ZeRO (global_step5/, over 2 processes; saved at ZeRO-2, "
           "as {config} records), which a run with train.zero_stage 0 cannot read; resume it with "
           "train.zero_stage: 2 (under any number of processes)"),
    (1, 0, "saved at ZeRO-1, as {config} records), which a run with train.zero_stage 0 cannot read; resume it with "
           "train.zero_stage: 1 "),
    # ZeRO-0's bf16 optimizer state (its bf16 optimizer partitions it too) read by ZeRO-1/2
    (0, 2, "its optimizer state was saved by DeepSpeed without ZeRO (train.zero_stage 0: as {config} records; its "
           "bf16_zero_pp_rank_* files are DeepSpeed's bf16 optimizer's, not ZeRO's), which a run with "
           "train.zero_stage 2 cannot read; resume it with train.zero_stage: 0"),
    (0, 1, "which a run with train.zero_stage 1 cannot read; resume it with train.zero_stage: 0"),
    (2, 2, None), (2, 1, None), (0, 0, None),  # ZeRO-1 and ZeRO-2 read each other's partitions
])
def test_bf16_partitions_are_told_apart_by_the_stage_the_run_recorded(tmp_path: Path, saved: int, stage: int,
                                                                    message: str | None) -> None:
    checkpoint = _bf16_checkpoint_of_a_run(tmp_path, saved)
    if message is None:
        assert check_resume_layout(checkpoint, "deepspeed", 2, stage) is False
        return
    with pytest.raises(DsftError) as info:
        check_resume_layout(checkpoint, "deepspeed", 2, stage)
    assert message.format(config=tmp_path / "run" / "config.yaml") in str(info.value), info.value


@pytest.mark.parametrize(("saved", "stage", "message"), [
    (2, 0, "(global_step5/, over 2 processes; saved at ZeRO-2, as {model_states} records), which a run with "
           "train.zero_stage 0 cannot read; resume it with train.zero_stage: 2 "),
    (None, 2, "saved by DeepSpeed without ZeRO (train.zero_stage 0: as {model_states} records; its "
              "bf16_zero_pp_rank_* files are DeepSpeed's bf16 optimizer's, not ZeRO's), which a run with "
              "train.zero_stage 2 cannot read"),
    (0, 1, "which a run with train.zero_stage 1 cannot read; resume it with train.zero_stage: 0"),
    (1, 2, None), (0, 0, None),
])
def test_bf16_partitions_outside_a_run_are_told_apart_by_the_stage_deepspeed_recorded(
        tmp_path: Path, saved: int | None, stage: int, message: str | None) -> None:
    checkpoint = _checkpoint(tmp_path, ranks=2, bf16=True)  # copied out of its run: no config.yaml says its stage
    _recorded_by_deepspeed(checkpoint, saved)
    if message is None:
        assert check_resume_layout(checkpoint, "deepspeed", 2, stage) is False
        return
    with pytest.raises(DsftError) as info:
        check_resume_layout(checkpoint, "deepspeed", 2, stage)
    model_states = checkpoint / "global_step5" / "mp_rank_00_model_states.pt"
    assert message.format(model_states=model_states) in str(info.value), info.value


@pytest.mark.parametrize("config", [{"zero_stage": 3}, {"zero_stage": 0, "distributed": "ddp"}, {"zero_stage": "x"}])
def test_a_run_record_that_does_not_fit_the_checkpoint_gives_way_to_deepspeed_s(tmp_path: Path, config: dict) -> None:
    # ZeRO-3 would have written partitioned model states; a DDP run's config did not save DeepSpeed state (the
    # checkpoint was copied in): DeepSpeed's own record decides.
    checkpoint = _bf16_checkpoint_of_a_run(tmp_path, **config)
    _recorded_by_deepspeed(checkpoint, 2)
    with pytest.raises(DsftError) as info:
        check_resume_layout(checkpoint, "deepspeed", 2, 0)
    assert "saved at ZeRO-2, as " + str(checkpoint / "global_step5" / "mp_rank_00_model_states.pt") in str(info.value)


def test_the_stage_a_run_recorded_is_read_before_torch_is_imported(tmp_path: Path) -> None:
    """dsft train runs the layout check before torch is imported (seconds, on a busy machine tens of them)."""
    checkpoint = _bf16_checkpoint_of_a_run(tmp_path, 2)
    code = ("import sys\nfrom pathlib import Path\nfrom dsft.errors import DsftError\n"
            "from dsft.training.resume_layout import check_resume_layout\n"
            f"try:\n    check_resume_layout(Path({str(checkpoint)!r}), 'deepspeed', 2, 0)\n"
            "except DsftError as exc:\n    print('refused:', exc)\n"
            "print('torch imported:', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "refused:" in out and "saved at ZeRO-2" in out and "torch imported: False" in out, out


def _config(path: Path, data: Path, grad_accum: int) -> Path:
    path.write_text(
        "model:\n  name_or_path: tiny-deepseek-v3\n"
        f"data:\n  train: [{data}]\n  val_ratio: 0.0\n"
        f"train:\n  method: lora\n  max_steps: 10\n  micro_batch_size: 2\n  grad_accum: {grad_accum}\n"
        "  max_seq_len: 96\n  lr: 0.005\n  save_steps: 5\n  logging_steps: 1\n  seed: 3\n"
        "  distributed: deepspeed\n  zero_stage: 2\n  loss_dtype: fp32\n"
        "eval:\n  load_best: false\n", encoding="utf-8")
    return path


def _logged(run: Path, key: str) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r and "step" in r}


def _assert_steps_6_to_10_as_the_whole_run(whole_run: Path, resumed_run: Path) -> None:
    """A run resumed from ``whole_run``'s checkpoint-5 logs its ten steps, and steps 6-10 with the losses and
    learning rates of the run that never stopped."""
    for key in ("loss", "lr"):
        whole, resumed = _logged(whole_run, key), _logged(resumed_run, key)
        assert sorted(resumed) == list(range(1, 11))
        for step in range(6, 11):
            assert abs(whole[step] - resumed[step]) <= 1e-4, (key, step, whole[step], resumed[step])


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir, train_run) -> Path:
    tiny_model_dir("tiny-deepseek-v3")
    root = tmp_path_factory.mktemp("resume-world-size")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} plus {i % 7}?"},
        {"role": "assistant", "content": f"{i} plus {i % 7} is {i + i % 7}."}]}) + "\n" for i in range(120)))
    train_run([str(_config(root / "two.yaml", data, grad_accum=1)), "--out", str(root / "two")], 2, root)
    return root / "two"


@pytest.fixture(scope="module")
def one_process_run(two_process_run: Path, train_run) -> Path:
    """The same batch in one process without DeepSpeed: micro-batch 2 and 2 accumulation steps."""
    root = two_process_run.parent
    config = _config(root / "plain.yaml", root / "data.jsonl", grad_accum=2)
    config.write_text(config.read_text().replace("distributed: deepspeed\n  zero_stage: 2", "distributed: auto"))
    train_run([str(config), "--out", str(root / "plain")], 1, root)
    return root / "plain"


@pytest.mark.slow
def test_deepspeed_zero2_two_process_equals_one_process(two_process_run: Path, one_process_run: Path) -> None:
    """Two processes under torchrun with ZeRO-2 log the losses of one process without DeepSpeed (the loss is
    normalised by the supervised tokens of the whole global batch; 1e-4: float rounding)."""
    one, zero2 = _logged(one_process_run, "loss"), _logged(two_process_run, "loss")
    assert sorted(one) == sorted(zero2) == list(range(1, 11))
    for step in one:
        assert abs(one[step] - zero2[step]) <= 1e-4, (step, one[step], zero2[step])
    assert one[10] < one[1]  # it trained
    assert json.loads((two_process_run / "deepspeed.json").read_text())["train_batch_size"] == 4


@pytest.mark.slow
def test_the_logged_learning_rate_is_the_one_each_deepspeed_step_used(two_process_run: Path,
                                                                      one_process_run: Path) -> None:
    """The two-process ZeRO-2 run logs the rates of one process without DeepSpeed (the same batch, the same
    schedule), the rate each step used. DeepSpeed steps the optimizer and the scheduler inside the backward of a
    step's last micro-batch, so the Trainer read the next step's rate: each step's was logged one step early
    (0.00488 for step 1, which used 0.005)."""
    plain, zero2 = _logged(one_process_run, "lr"), _logged(two_process_run, "lr")
    assert sorted(plain) == sorted(zero2) == list(range(1, 11))
    assert len(set(plain.values())) > 5  # the default cosine schedule changes the rate every step
    assert [zero2[step] for step in plain] == pytest.approx(list(plain.values()), rel=1e-9)


@pytest.mark.slow
def test_a_zero2_checkpoint_of_two_processes_resumes_exactly_in_one(two_process_run: Path, tmp_path: Path,
                                                                   train_run) -> None:
    """Saved by two processes at step 5, resumed by one with twice the accumulation (the same batch): steps 6-10
    log the losses and learning rates of the run that never stopped. Before: ZeRORuntimeException on every rank."""
    root = two_process_run.parent
    config = _config(tmp_path / "one.yaml", root / "data.jsonl", grad_accum=2)
    train_run([str(config), "--out", str(tmp_path / "one"), "--resume",
               str(two_process_run / "checkpoints" / "checkpoint-5")], 1, root, torchrun=True)
    _assert_steps_6_to_10_as_the_whole_run(two_process_run, tmp_path / "one")
    info = json.loads((tmp_path / "one" / "run.json").read_text())
    assert info["resumed_through"].endswith(f"{UNIVERSAL_DIR}/checkpoint-5"), info
    assert not (tmp_path / "one" / "checkpoints" / UNIVERSAL_DIR).exists(), "the conversion is removed at the end"
    assert deepspeed_state(two_process_run / "checkpoints" / "checkpoint-5").processes == 2  # left as it was
    assert not (two_process_run / "checkpoints" / "checkpoint-5" / "latest_universal").exists()


@pytest.mark.slow
def test_a_zero2_checkpoint_resumes_exactly_at_zero1(two_process_run: Path, tmp_path: Path, train_run) -> None:
    """ZeRO-1 and ZeRO-2 partition the optimizer state alike (DeepSpeed's one ZeRO optimizer; ZeRO-2 partitions the
    gradients as well), so the saved partitions are read as they are, with no conversion: steps 6-10 log the losses
    and learning rates of the ZeRO-2 run that never stopped (a new optimizer would not)."""
    root = two_process_run.parent
    config = _config(tmp_path / "zero1.yaml", root / "data.jsonl", grad_accum=1)
    config.write_text(config.read_text().replace("zero_stage: 2", "zero_stage: 1"))
    train_run([str(config), "--out", str(tmp_path / "zero1"), "--resume",
               str(two_process_run / "checkpoints" / "checkpoint-5")], 2, root)
    _assert_steps_6_to_10_as_the_whole_run(two_process_run, tmp_path / "zero1")
    info = json.loads((tmp_path / "zero1" / "run.json").read_text())
    assert info["resumed_from"] == str(two_process_run / "checkpoints" / "checkpoint-5"), info
    assert "resumed_through" not in info, info  # read as saved: no universal conversion


@pytest.mark.slow
def test_a_deepspeed_checkpoint_resumed_without_deepspeed_is_refused(two_process_run: Path, tmp_path: Path) -> None:
    """Without DeepSpeed the Trainer found no optimizer.pt and restarted the optimizer and the learning-rate
    schedule (lr 5e-3 at step 6 of a cosine run at 1.7e-3) without a word."""
    root = two_process_run.parent
    code, _, stderr = dsft_in_processes(["train", str(root / "two.yaml"), "--set", "train.distributed=auto",
                                         "--out", str(tmp_path / "plain"), "--resume",
                                         str(two_process_run / "checkpoints" / "checkpoint-5")], 1, root)
    assert code == 2 and "Traceback" not in stderr, stderr[-3000:]
    assert "its optimizer and learning-rate scheduler state were saved by DeepSpeed" in stderr, stderr[-3000:]
    assert not (tmp_path / "plain").exists(), "refused before the run directory was written"


@pytest.mark.slow
def test_a_bf16_zero2_checkpoint_resumed_by_zero0_is_refused_before_the_model_loads(
        tmp_path: Path, tiny_model_dir, train_run) -> None:
    """A real bf16 ZeRO-2 checkpoint of two CPU processes holds only bf16_zero_pp_rank_* partitions (and the model
    states). Resumed with train.zero_stage 0 it reached DeepSpeed, which stopped once the model had loaded with a
    traceback on every rank (TypeError: 'NoneType' object is not subscriptable). The stage its run recorded refuses
    it; copied out of its run, the stage DeepSpeed recorded in it does."""
    tiny_model_dir("tiny-deepseek-v3")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} plus 1?"},
        {"role": "assistant", "content": f"{i} plus 1 is {i + 1}."}]}) + "\n" for i in range(16)))
    config = _config(tmp_path / "bf16.yaml", data, grad_accum=1)
    text = config.read_text()
    for setting, value in (("max_steps: 10", "max_steps: 2"), ("save_steps: 5", "save_steps: 2"),
                           ("seed: 3", "seed: 3\n  precision: bf16")):
        text = text.replace(setting, value)
    config.write_text(text)
    train_run([str(config), "--out", str(tmp_path / "bf16")], 2, tmp_path)
    checkpoint = tmp_path / "bf16" / "checkpoints" / "checkpoint-2"
    assert sorted(p.name for p in (checkpoint / "global_step2").iterdir()) == [
        "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt",
        "mp_rank_00_model_states.pt"]
    copied = tmp_path / "copied" / "checkpoint-2"
    shutil.copytree(checkpoint, copied)
    for resumed, record in ((checkpoint, tmp_path / "bf16" / "config.yaml"),
                            (copied, copied / "global_step2" / "mp_rank_00_model_states.pt")):
        out = tmp_path / f"zero0-{resumed.parent.name}"
        code, _, stderr = dsft_in_processes(["train", str(config), "--set", "train.zero_stage=0", "--out", str(out),
                                             "--resume", str(resumed)], 1, tmp_path, torchrun=True)
        # The process exits 2 with the one message; torchrun then reports its child's failure (its own traceback).
        said = stderr.split("failed (exitcode: 2)")
        assert code != 0 and len(said) == 2 and "Traceback" not in said[0], stderr[-3000:]
        assert (f"--resume {resumed}: its optimizer state is partitioned by DeepSpeed ZeRO (global_step2/, over 2 "
                f"processes; saved at ZeRO-2, as {record} records), which a run with train.zero_stage 0 cannot read; "
                "resume it with train.zero_stage: 2") in " ".join(stderr.split()), stderr[-3000:]
        assert not out.exists(), "refused before the run directory was written"


def _fake_conversion(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """DeepSpeed's ds_to_universal replaced by one that writes what the resume reads; returns the folders it read."""
    ds_to_universal = pytest.importorskip("deepspeed.checkpoint.ds_to_universal")
    read: list[str] = []

    def convert(args: object) -> None:
        read.append(args.input_folder)  # type: ignore[attr-defined]
        output = Path(args.output_folder)  # type: ignore[attr-defined]
        output.mkdir()
        (output / "source").write_text(args.input_folder)  # type: ignore[attr-defined]
        (output.parent / "latest_universal").write_text(output.name)

    monkeypatch.setattr(ds_to_universal, "main", convert)
    return read


def test_a_conversion_left_for_another_checkpoint_of_the_same_name_is_not_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stopped resume of run-a's checkpoint-5 left its conversion; this run now resumes run-b's checkpoint-5.
    from dsft.training.resume_layout import universal_checkpoint

    read = _fake_conversion(monkeypatch)
    root = tmp_path / "run" / "checkpoints"
    first = _checkpoint(tmp_path / "run-a", ranks=2)
    universal_checkpoint(first, root)
    second = _checkpoint(tmp_path / "run-b", ranks=2)
    resumed = universal_checkpoint(second, root)
    assert read == [str(first / "global_step5"), str(second / "global_step5")]
    assert (resumed / "latest").resolve() == (second / "latest").resolve()
    assert (resumed / "global_step5_universal" / "source").read_text() == str(second / "global_step5")
    assert universal_checkpoint(second, root) == resumed and len(read) == 2  # the same checkpoint again: reused


def test_a_conversion_of_a_checkpoint_saved_again_since_is_not_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # checkpoint-5 converted by a resume that was stopped; a resume from an earlier checkpoint saved checkpoint-5 anew.
    from dsft.training.resume_layout import universal_checkpoint

    read = _fake_conversion(monkeypatch)
    root = tmp_path / "run" / "checkpoints"
    checkpoint = _checkpoint(root, ranks=2)
    universal_checkpoint(checkpoint, root)
    optim = checkpoint / "global_step5" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    optim.write_bytes(b"saved again")
    universal_checkpoint(checkpoint, root)
    assert len(read) == 2


# remove_universal_checkpoints: called by a run that read a conversion once its Trainer has started (every process
# read it), and at the start of one that does not read it (a stopped resume's leftover). It removes only
# checkpoints/.universal/: the checkpoints it mirrors (linked, maybe another run's) and everything else stay.


def _files(top: Path) -> dict[str, bytes]:
    """Every file under ``top`` (links not followed) and its bytes: what must be left as it was."""
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file() and
            not p.is_symlink()}


def _converted(run: Path, checkpoint: Path) -> Path:
    """``run``'s checkpoints/.universal/ holding the conversion of ``checkpoint``, as a stopped resume leaves it."""
    from dsft.training.resume_layout import universal_checkpoint

    universal = universal_checkpoint(checkpoint, run / "checkpoints")
    assert (universal / "latest").is_symlink() and (universal / "global_step5_universal").is_dir()
    return universal.parent


def test_the_conversion_is_removed_and_the_checkpoints_it_mirrors_stay(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dsft.training.resume_layout import remove_universal_checkpoints

    _fake_conversion(monkeypatch)
    run = tmp_path / "run"
    checkpoint = _checkpoint(run / "checkpoints", ranks=2)
    (run / "run.json").write_text("{}")
    universal = _converted(run, checkpoint)
    kept = _files(run / "checkpoints" / "checkpoint-5")
    remove_universal_checkpoints(run / "checkpoints")
    assert not universal.exists() and not universal.is_symlink()
    assert _files(run / "checkpoints" / "checkpoint-5") == kept and (run / "run.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-5"]


def test_a_conversion_of_another_runs_checkpoint_is_removed_without_following_its_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--resume ../run-a/checkpoints/checkpoint-5: the mirror's links point into run-a, which must stay whole."""
    from dsft.training.resume_layout import remove_universal_checkpoints

    _fake_conversion(monkeypatch)
    other = _checkpoint(tmp_path / "run-a" / "checkpoints", ranks=2)
    before = _files(tmp_path / "run-a")
    universal = _converted(tmp_path / "run-b", other)
    remove_universal_checkpoints(tmp_path / "run-b" / "checkpoints")
    assert not universal.exists() and _files(tmp_path / "run-a") == before


def test_a_mirror_whose_checkpoint_is_gone_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint was deleted after the conversion: every link of the mirror points nowhere."""
    import shutil

    from dsft.training.resume_layout import remove_universal_checkpoints

    _fake_conversion(monkeypatch)
    run = tmp_path / "run"
    checkpoint = _checkpoint(run / "checkpoints", ranks=2)
    universal = _converted(run, checkpoint)
    shutil.rmtree(checkpoint)
    assert not (universal / "checkpoint-5" / "latest").exists()  # dangling
    remove_universal_checkpoints(run / "checkpoints")
    assert not universal.exists() and not universal.is_symlink()


@pytest.mark.parametrize("target", ["elsewhere", "nowhere"])
def test_a_universal_folder_that_is_a_link_is_unlinked_and_what_it_names_stays(tmp_path: Path, target: str) -> None:
    """checkpoints/.universal a symbolic link (to a scratch disk, or to nothing any more): the link goes, nothing
    outside the run directory is removed."""
    from dsft.training.resume_layout import remove_universal_checkpoints

    elsewhere = tmp_path / "scratch"
    (elsewhere / "checkpoint-5").mkdir(parents=True)
    (elsewhere / "checkpoint-5" / "mine.txt").write_text("not the run's")
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / UNIVERSAL_DIR).symlink_to(elsewhere if target == "elsewhere" else tmp_path / "gone")
    remove_universal_checkpoints(root)
    assert not (root / UNIVERSAL_DIR).is_symlink() and not (root / UNIVERSAL_DIR).exists()
    assert (elsewhere / "checkpoint-5" / "mine.txt").read_text() == "not the run's"


def test_nothing_to_remove_is_no_error(tmp_path: Path) -> None:
    from dsft.training.resume_layout import remove_universal_checkpoints

    remove_universal_checkpoints(tmp_path / "no-run" / "checkpoints")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    remove_universal_checkpoints(tmp_path / "run" / "checkpoints")
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []


def test_a_universal_folder_linked_to_nothing_does_not_stop_the_conversion(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """It was refused as 'File exists' by the mkdir of the conversion, so the resume could not start."""
    read = _fake_conversion(monkeypatch)
    run = tmp_path / "run"
    checkpoint = _checkpoint(run / "checkpoints", ranks=2)
    (run / "checkpoints" / UNIVERSAL_DIR).symlink_to(tmp_path / "gone")
    universal = _converted(run, checkpoint)
    assert universal.is_dir() and not universal.is_symlink() and len(read) == 1


def test_a_conversion_that_cannot_be_removed_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """ignore_errors hid it: the fp32 copy of the optimizer state stayed on disk without a word."""
    import shutil

    from dsft.training import resume_layout

    universal = tmp_path / "run" / "checkpoints" / UNIVERSAL_DIR
    (universal / "checkpoint-5").mkdir(parents=True)

    def refused(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refused)
    with caplog.at_level("WARNING", logger="dsft"):
        resume_layout.remove_universal_checkpoints(universal.parent)
    assert f"could not remove {universal}" in caplog.text and "Permission denied" in caplog.text
