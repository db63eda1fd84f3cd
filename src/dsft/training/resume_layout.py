"""Whether the run that resumes a checkpoint can read its optimizer state, and DeepSpeed's across process counts.

A checkpoint's optimizer and learning-rate scheduler state is written in the layout of the strategy that saved it:
torch's ``optimizer.pt`` and ``scheduler.pt``, or DeepSpeed's ``global_stepN/`` folder (named in ``latest``), whose
ZeRO optimizer state is partitioned over the processes of the job that saved it
(``zero_pp_rank_R_mp_rank_00_optim_states.pt``, one per rank). transformers' Trainer reads only its own kind:
a DeepSpeed checkpoint resumed without DeepSpeed started a new optimizer and restarted the learning-rate schedule
from its first step without a word (lr 5e-3 at step 6 of a cosine run that was at 1.7e-3), and a torch checkpoint
resumed under DeepSpeed stopped in transformers ("Can't find a valid checkpoint"). Both are refused before
anything loads (:func:`check_resume_layout`).

DeepSpeed cannot load ZeRO optimizer partitions into another number of processes ("Automatic adjustment of ZeRO's
optimizer state partitioning with a new world size is not currently supported"), a traceback on every rank. So a
ZeRO checkpoint resumed by a job of another size, or across ZeRO-3 and ZeRO-1/2, is converted once into DeepSpeed's
universal checkpoint (every parameter's fp32 value and Adam moments whole, :func:`universal_checkpoint`), which
DeepSpeed loads into any layout with ``checkpoint.load_universal``. The conversion goes beside the run's
checkpoints, in ``checkpoints/.universal/checkpoint-N/`` (the checkpoint's files linked, the converted
``global_stepN_universal/`` and ``latest_universal``), never into the checkpoint itself; it is removed when the run
ends, reused by a resume of the same checkpoint before that (a stopped run's: the same directory, its DeepSpeed
files unchanged since, :func:`_source_record`), and removed by a run that does not read it.

A resume across ZeRO-0 and a stage that partitions the optimizer state is refused: neither reads the other's, and
ZeRO-0 loads no optimizer state from a universal checkpoint. The stage a checkpoint was saved at is told by its
files where they can tell it (:class:`DeepSpeedState`); bf16 partitions alone (``bf16_zero_pp_rank_*``) are written
at ZeRO-1/2 and, by DeepSpeed versions whose bf16 optimizer runs without ZeRO, at ZeRO-0 too, so for those the
stage recorded decides (:func:`saved_zero_stages`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from dsft.config import TrainConfig
from dsft.errors import DsftError
from dsft.training.checkpointing import list_checkpoints
from dsft.training.distributed import resolve_strategy
from dsft.training.ranks import warn_for_job
from dsft.training.rundir import RunDir

log = logging.getLogger("dsft")

UNIVERSAL_DIR = ".universal"
_COMPLETE = ".complete"
_OPTIM_STATES = re.compile(r"(bf16_)?zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt")
_ZERO3_MODEL_STATES = re.compile(r"zero_pp_rank_\d+_mp_rank_\d+_model_states\.pt")
_MODEL_STATES = "mp_rank_00_model_states.pt"


@dataclass(frozen=True)
class DeepSpeedState:
    """The DeepSpeed state of a checkpoint: its folder, how its optimizer state is partitioned (``processes`` None:
    not partitioned, as under ZeRO-0), and the ZeRO stages its files allow (``stages``): (3,) with ZeRO-3's
    partitioned model states, (1, 2) with ZeRO partitions (``zero_pp_rank_*``), (0,) with no partition, and
    (0, 1, 2) with bf16 partitions alone (``bf16_zero_pp_rank_*``: written by ZeRO-1/2 in bf16, and by ZeRO-0 in
    DeepSpeed versions whose bf16 optimizer runs without ZeRO)."""

    folder: Path
    processes: int | None
    zero3: bool
    stages: tuple[int, ...] = (0,)


def deepspeed_state(checkpoint: Path) -> DeepSpeedState | None:
    """The DeepSpeed state ``checkpoint`` holds (the folder its ``latest`` file names), or None."""
    latest = checkpoint / "latest"
    if not latest.is_file():
        return None
    folder = checkpoint / latest.read_text(encoding="utf-8").strip()
    if not folder.is_dir():
        return None
    names = [p.name for p in folder.iterdir()]
    partitions = [m for name in names if (m := _OPTIM_STATES.fullmatch(name))]
    ranks = {int(m.group(2)) for m in partitions}
    zero3 = any(_ZERO3_MODEL_STATES.fullmatch(name) for name in names)
    stages = ((3,) if zero3 else (1, 2) if any(m.group(1) is None for m in partitions)
              else (0, 1, 2) if partitions else (0,))
    return DeepSpeedState(folder, len(ranks) or None, zero3, stages)


def saved_zero_stages(checkpoint: Path, state: DeepSpeedState) -> tuple[tuple[int, ...], Path | None]:
    """The ZeRO stages ``checkpoint`` (whose DeepSpeed state is ``state``) may have been saved at, and the record that
    decided them (None: its files did). Where the files allow ZeRO-0 and a partitioning stage alike (bf16 partitions
    alone), the stage recorded decides: the ``train.zero_stage`` of the dsft run it is a checkpoint of (its
    ``config.yaml``, read without torch; a resume cannot change that key, so every checkpoint of the run was saved
    at it), else the stage DeepSpeed recorded in the checkpoint (:func:`_deepspeed_recorded_stage`). A record the
    files contradict is not taken; with none, the stages stay open."""
    if len(state.stages) == 1 or 0 not in state.stages:
        return state.stages, None
    for recorded in (lambda: _run_recorded_stage(checkpoint), lambda: _deepspeed_recorded_stage(state)):
        found = recorded()
        if found is not None and found[0] in state.stages:
            return (found[0],), found[1]
    return state.stages, None


def _run_recorded_stage(checkpoint: Path) -> tuple[int, Path] | None:
    """``train.zero_stage`` as the run ``checkpoint`` belongs to recorded it, and its ``config.yaml``; None outside
    a dsft run, or for a run whose config did not train with DeepSpeed (the checkpoint was copied in)."""
    run = RunDir.find(checkpoint)
    train = run.recorded_config().get("train") if run is not None else None
    if run is None or not isinstance(train, dict) or train.get("distributed") not in ("deepspeed", "auto"):
        return None
    stage = train.get("zero_stage")
    return (stage, run.config_path) if isinstance(stage, int) and not isinstance(stage, bool) else None


def _deepspeed_recorded_stage(state: DeepSpeedState) -> tuple[int, Path] | None:
    """The ZeRO stage DeepSpeed recorded in the checkpoint, and where: ``ds_config`` (the configuration of the engine
    that saved it) in ``mp_rank_00_model_states.pt``, read as torch reads weights (``weights_only``: no pickled code
    runs) and mapped rather than read (``mmap``: the model's tensors stay on disk); None where it is missing or
    cannot be read so."""
    path = state.folder / _MODEL_STATES
    if not path.is_file():
        return None
    import torch  # heavy, and this module is imported before torch: only for a checkpoint no dsft run records

    try:
        saved = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None
    ds_config = saved.get("ds_config") if isinstance(saved, dict) else None
    zero = ds_config.get("zero_optimization", {}) if isinstance(ds_config, dict) else None
    stage = zero.get("stage", 0) if isinstance(zero, dict) else None  # DeepSpeed's default stage is 0
    return (stage, path) if isinstance(stage, int) and not isinstance(stage, bool) else None


def check_resume_layout(checkpoint: Path, strategy: str, world_size: int, zero_stage: int) -> bool:
    """Refuse a resume whose run cannot read ``checkpoint``'s optimizer state; True when it is a DeepSpeed ZeRO
    state partitioned otherwise than this run partitions it (``world_size`` processes, ``zero_stage``), which is
    read through :func:`universal_checkpoint`."""
    state = deepspeed_state(checkpoint)
    if state is not None and strategy != "deepspeed":
        saved = f"over {state.processes} processes" if state.processes else "by DeepSpeed"
        raise DsftError(
            f"--resume {checkpoint}: its optimizer and learning-rate scheduler state were saved by DeepSpeed "
            f"({state.folder.name}/, partitioned {saved}), which this run ({_described(strategy, world_size)}) "
            "cannot read: it would start a new optimizer and restart the learning-rate schedule. Resume it with "
            "train.distributed: deepspeed under a launcher (any number of processes), or start a new --out "
            "directory", job_wide=True)
    if state is None and strategy == "deepspeed" and (checkpoint / "optimizer.pt").is_file():
        raise DsftError(
            f"--resume {checkpoint}: its optimizer state is torch's (optimizer.pt, saved without DeepSpeed), which "
            "DeepSpeed cannot read; resume it with the train.distributed it was saved with, or start a new --out "
            "directory", job_wide=True)
    if state is not None and strategy == "deepspeed":
        _check_zero_stage(checkpoint, state, zero_stage)
    if state is None or strategy != "deepspeed" or state.processes is None:
        return False
    return state.processes != world_size or state.zero3 != (zero_stage == 3)


def _check_zero_stage(checkpoint: Path, state: DeepSpeedState, zero_stage: int) -> None:
    """Refuse a resume across ZeRO-0 and a stage that partitions the optimizer state: neither reads the other's
    (DeepSpeed stopped after the model loaded, with a traceback on every rank or on a partition file the checkpoint
    never had), and a universal checkpoint does not help (ZeRO-0 loads no optimizer state from one). A checkpoint
    whose stage neither its files nor a record tell is left to DeepSpeed."""
    stages, source = saved_zero_stages(checkpoint, state)
    if zero_stage == 0 and 0 not in stages:
        recorded = f"; saved at ZeRO-{stages[0]}, as {source} records" if source is not None else ""
        raise DsftError(
            f"--resume {checkpoint}: its optimizer state is partitioned by DeepSpeed ZeRO ({state.folder.name}/, over "
            f"{state.processes} processes{recorded}), which a run with train.zero_stage 0 cannot read; resume it with "
            f"train.zero_stage: {' or '.join(map(str, stages))} (under any number of processes), or start a new --out "
            "directory", job_wide=True)
    if zero_stage > 0 and stages == (0,):
        held = (f"{state.folder.name}/{_MODEL_STATES} holds it whole" if source is None else
                f"as {source} records; its bf16_zero_pp_rank_* files are DeepSpeed's bf16 optimizer's, not ZeRO's")
        raise DsftError(
            f"--resume {checkpoint}: its optimizer state was saved by DeepSpeed without ZeRO (train.zero_stage 0: "
            f"{held}), which a run with train.zero_stage {zero_stage} cannot read; resume it with train.zero_stage: 0, "
            "or start a new --out directory", job_wide=True)


def check_resume_layout_before_loading(resume: str | None, checkpoint_root: Path, train: TrainConfig,
                                       world_size: int, cuda: bool) -> None:
    """:func:`check_resume_layout` where ``dsft train`` checks its inputs, before torch is imported: on the
    checkpoint named, or for ``auto`` the newest in ``checkpoint_root`` (a run's checkpoints share one layout)."""
    if resume is None:
        return
    found = list_checkpoints(checkpoint_root) if resume == "auto" else [Path(resume)]
    if found and found[-1].is_dir():
        check_resume_layout(found[-1], resolve_strategy(train, world_size, cuda=cuda), world_size, train.zero_stage)


def _described(strategy: str, world_size: int) -> str:
    """``DDP over 2 processes``, ``one process without DeepSpeed``."""
    name = {"none": "without DeepSpeed", "ddp": "DDP", "fsdp": "FSDP"}.get(strategy, strategy)
    return f"one process {name}" if world_size == 1 and strategy == "none" else f"{name} over {world_size} processes"


def universal_checkpoint(checkpoint: Path, checkpoint_root: Path) -> Path:
    """A directory that resumes as ``checkpoint`` does, with its DeepSpeed state also in DeepSpeed's universal
    format: ``checkpoint_root/.universal/NAME`` (converted by the first process to get there; the others wait for
    it and reuse it)."""
    from filelock import FileLock

    state = deepspeed_state(checkpoint)
    assert state is not None, "check_resume_layout said it holds DeepSpeed state"
    target = checkpoint_root / UNIVERSAL_DIR / checkpoint.name
    if target.parent.is_symlink() and not target.parent.is_dir():  # a link to nothing: mkdir said 'File exists'
        with contextlib.suppress(FileNotFoundError):  # every process gets here; one unlinks it
            target.parent.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        done = target / _COMPLETE
        # A conversion of another checkpoint of that name (another run's), or of one saved again since, is redone.
        if not done.is_file() or done.read_text(encoding="utf-8") != _source_record(checkpoint, state):
            _convert(checkpoint, state, target)
    return target


def _source_record(checkpoint: Path, state: DeepSpeedState) -> str:
    """What a conversion was made from: the checkpoint's path and each file of its DeepSpeed state (name, size,
    modification time), written in ``.complete`` once the conversion is whole."""
    files = sorted(p for p in state.folder.iterdir() if p.is_file())
    return "".join([f"{checkpoint.resolve()}\n",
                    *(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}\n" for p in files)])


def _convert(checkpoint: Path, state: DeepSpeedState, target: Path) -> None:
    from deepspeed.checkpoint import ds_to_universal

    warn_for_job(log, "--resume: %s's DeepSpeed optimizer state is partitioned over %d process(es)%s; converting it "
                 "once to DeepSpeed's universal checkpoint in %s, which loads into this run's layout",
                 checkpoint.name, state.processes, " under ZeRO-3" if state.zero3 else "", target)
    if target.exists():
        shutil.rmtree(target)  # a conversion killed half way
    target.mkdir()
    for entry in checkpoint.iterdir():
        if entry.name not in ("latest_universal", f"{state.folder.name}_universal"):
            (target / entry.name).symlink_to(entry.resolve())
    args = argparse.Namespace(input_folder=str(state.folder), output_folder=str(target / f"{state.folder.name}_universal"),
                              num_extract_workers=1, num_merge_workers=1, keep_temp_folder=False, strict=True,
                              inject_missing_state=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its prints, bars
        ds_to_universal.main(args)  # writes target/latest_universal too
    (target / _COMPLETE).write_text(_source_record(checkpoint, state), encoding="utf-8")


def load_universal(trainer: object) -> None:
    """Make ``trainer``'s DeepSpeed engine read universal checkpoints (``checkpoint.load_universal``): the
    config accelerate hands DeepSpeed when the Trainer starts, before the checkpoint is loaded. deepspeed.json
    stays as written; run.json says the resume was read through the conversion."""
    plugin = trainer.accelerator.state.deepspeed_plugin  # type: ignore[attr-defined]
    plugin.hf_ds_config.config.setdefault("checkpoint", {})["load_universal"] = True


def remove_universal_checkpoints(checkpoint_root: Path) -> None:
    """Remove the conversions :func:`universal_checkpoint` made, ``checkpoint_root/.universal`` and nothing else:
    called once every process of a run that read one has started from it, and by a run that reads none (what a
    stopped resume left). The links that mirror a checkpoint (maybe another run's) are removed, never followed; a
    ``.universal`` that is itself a link (to a scratch disk, or to nothing any more) is unlinked and what it names
    left alone, outside the run directory. What cannot be removed is said, not raised: the run's work is done."""
    universal = checkpoint_root / UNIVERSAL_DIR
    try:
        if universal.is_symlink():  # rmtree refuses a link, and ignore_errors had hidden that it stayed
            universal.unlink()
        elif universal.is_dir():
            shutil.rmtree(universal)
    except OSError as exc:
        log.warning("could not remove %s (%s); it holds the fp32 copy of a checkpoint's optimizer state DeepSpeed "
                    "resumed from, which nothing reads any more: remove it by hand", universal, exc)
