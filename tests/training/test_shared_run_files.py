"""Files every process of a launched job writes alike, at once, into the same run directory: config.yaml and the
config it replaces, run.json, data_report.json and the prepared data. Each is written through a rename, so no
process reads another's half-written file, and the kept config is the one the process compared."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import dsft.training.rundir as rundir
from dsft.config import load_config
from dsft.data.conversation import Conversation
from dsft.data.report import write_jsonl
from dsft.errors import DsftError
from dsft.training.rundir import RunDir


def test_a_late_process_keeps_the_config_it_compared_not_the_one_another_process_wrote(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """Rank 1 compares the saved config (max_steps 5) while rank 0 replaces it (max_steps 9): rank 1's kept copy,
    read again after rank 0's write, used to hold max_steps 9, and the only record of the old config was lost."""
    run = RunDir(tmp_path / "run")
    run.prepare(load_config(None, ["train.max_steps=5"]), resuming=False)
    new = load_config(None, ["train.max_steps=9"])
    late_compared, early_done = threading.Event(), threading.Event()

    def safe_load(text: str) -> object:
        parsed = yaml.safe_load(text)
        if threading.current_thread().name == "late":
            late_compared.set()
            early_done.wait()  # the early process rewrites config.yaml between this read and this process's writes
        return parsed

    monkeypatch.setattr(rundir, "yaml", SimpleNamespace(safe_load=safe_load))
    late = threading.Thread(target=run.prepare, args=(new, False), name="late")
    late.start()
    late_compared.wait()
    run.prepare(new, resuming=False)
    early_done.set()
    late.join()
    kept = sorted(run.path.glob("config.before-*.yaml"))
    assert kept and all(yaml.safe_load(p.read_text(encoding="utf-8"))["train"]["max_steps"] == 5 for p in kept)
    assert yaml.safe_load(run.config_path.read_text(encoding="utf-8"))["train"]["max_steps"] == 9
    assert sorted(p.name for p in run.path.iterdir() if p.name.endswith(".tmp")) == []


class _Unwritable(Conversation):
    def to_dict(self) -> dict:  # type: ignore[override]
        raise OSError(28, "No space left on device")


def test_prepared_data_stopped_half_way_leaves_the_complete_file_it_replaced(tmp_path: Path) -> None:
    """A reader (another process, a later run) meets either the old complete file or the new one, never a part."""
    path = tmp_path / "train.jsonl"
    record = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    write_jsonl([Conversation.from_dict(record)] * 2, path)
    before = path.read_text(encoding="utf-8")
    unwritable = _Unwritable.from_dict(record)
    try:
        write_jsonl([Conversation.from_dict({**record, "messages": record["messages"][:1] + [
            {"role": "assistant", "content": "Changed."}]}), unwritable], path)
    except OSError:
        pass
    assert path.read_text(encoding="utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # no temporary file left
    assert [json.loads(line) for line in before.splitlines()][0]["messages"][1]["content"] == "Hello."


def test_two_processes_rebuilding_the_metrics_at_once_both_finish(tmp_path: Path, monkeypatch) -> None:
    """Every process of a launched job resumed with no step left rebuilds metrics.jsonl. With one shared temporary
    name, the first to rename took the second's file away: FileNotFoundError on the second."""
    import os

    from dsft.training.monitoring import rebuild_metrics

    path = tmp_path / "metrics.jsonl"
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    late_written, early_done = threading.Event(), threading.Event()
    replace = os.replace

    def replace_late(source: object, target: object) -> None:
        if threading.current_thread().name == "late":
            late_written.set()
            early_done.wait()  # the early process writes and renames its copy between the late one's two steps
        replace(source, target)

    monkeypatch.setattr(os, "replace", replace_late)
    failures: list[BaseException] = []

    def late_rebuild() -> None:
        try:
            rebuild_metrics(path, history, 2)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
            late_written.set()

    late = threading.Thread(target=late_rebuild, name="late")
    late.start()
    late_written.wait()
    rebuild_metrics(path, history, 2)
    early_done.set()
    late.join()
    assert failures == []
    assert [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()] == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_a_new_run_directory_holding_another_process_config_being_written_is_still_new(tmp_path: Path) -> None:
    """Under torchrun rank 1 may be between creating its temporary config.yaml and renaming it when rank 0
    checks --out: rank 0 read the directory as 'not empty and holds no dsft run' and the job stopped (guide
    000's two-process test, once in a CI run). A file that is not dsft's is still refused."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / ".config.yaml.4711-140234.tmp").write_text("train: {}\n", encoding="utf-8")
    run.prepare(load_config(None, ["train.max_steps=5"]), resuming=False)
    assert yaml.safe_load(run.config_path.read_text(encoding="utf-8"))["train"]["max_steps"] == 5
    other = RunDir(tmp_path / "other")
    other.path.mkdir()
    (other.path / "notes.tmp").write_text("mine", encoding="utf-8")
    with pytest.raises(DsftError, match="holds no dsft run"):
        other.prepare(load_config(None, []), resuming=False)


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_a_process_checking_run_data_while_another_prepares_it_sees_a_preparation(tmp_path: Path, monkeypatch,
                                                                                   objective: str) -> None:
    """Every process of a launched job checks RUN/data (check_prepared_output) and then prepares into it. A process
    still checking while another had written its splits and histogram, not yet their report, read the folder as the
    user's files ('would overwrite RUN/data/train.jsonl, ... not written by a preparation') and stopped the job. The
    check runs here after every file the preparation writes, as the slower process would."""
    import os

    from dsft.data import pipeline, report
    from dsft.data.prepared_output import check_prepared_output
    from dsft.data.preference_pipeline import prepare_preference
    from dsft.models.tokenizers import load_deepseek_tokenizer

    source = tmp_path / "in.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} if objective == "dpo" else
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(4)]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cfg = load_config(None, [f"train.objective={objective}", f"data.train=[{source}]", "data.val_ratio=0"])
    data = tmp_path / "run" / "data"
    refusals: list[str] = []
    checks = []

    def check_as_another_process() -> None:
        checks.append(sorted(p.name for p in data.iterdir()))
        try:
            check_prepared_output(cfg, data, None, f"--out {data.parent}")
        except DsftError as exc:
            refusals.append(str(exc))

    real_replace, real_histograms = os.replace, report.write_histograms

    def replace(*args: object) -> None:
        real_replace(*args)
        check_as_another_process()

    def write_histograms(*args: object) -> bool:
        written = real_histograms(*args)
        check_as_another_process()
        return written

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(report, "write_histograms", write_histograms)
    if objective == "dpo":
        prepare_preference(cfg, data, objective)
    else:
        pipeline.prepare(cfg, load_deepseek_tokenizer(), data)
    assert refusals == []
    assert any("train.jsonl" in names for names in checks)  # the check did run while the splits were there
