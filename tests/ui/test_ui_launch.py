"""New runs from the dashboard: validated before anything starts, trained in a detached process, stopped
gracefully (SIGTERM -> checkpoint -> run.json says stopped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dsft.config import DsftConfig
from dsft.config.loader import PATH_KEYS
from dsft.errors import DsftError
from dsft.training.environment import Environment
from dsft.ui import jobs, launch, processes, runs
from dsft.ui.paths import paths_under_root

POST = {"x-dsft-ui": "1"}


FORM = {"name": "new", "model": "tiny-deepseek-v3", "data": "d.jsonl", "method": "lora", "max_steps": "4",
        "max_seq_len": "64", "micro_batch_size": "2", "lora_r": "4", "val_ratio": "0"}


@pytest.mark.parametrize("change, message", [
    ({"name": ""}, "name ''"),
    ({"name": "../up"}, "name '../up'"),
    ({"name": "alpha"}, "already exists"),
    ({"model": "no-such-model"}, "model no-such-model: no such file or directory under the runs root"),
    ({"model": "../outside"}, "model ../outside: outside the runs root"),
    ({"model": "alpha"}, "model alpha: give a tiny preset"),
    ({"data": ""}, "data: name at least one"),
    ({"data": "../secret.jsonl"}, "data ../secret.jsonl: outside the runs root"),
    ({"data": "d.jsonl, nope.jsonl"}, "data nope.jsonl: no such file"),
    ({"method": "dora"}, "train.method"),
    ({"max_steps": "many"}, "train.max_steps"),
    # An emptied field was dropped: the run started on the config's default learning rate without a word.
    ({"lr": ""}, "train.lr: Input should be a valid number, unable to parse string as a number, got ''"),
    ({"val_ratio": " "}, "data.val_ratio: Input should be a valid number"),
    ({"extra": "train.optimizer=adamw_8bit"}, "train.optimizer: adamw_8bit needs"),
    ({"extra": "train.no_such_key=1"}, "no_such_key"),
    ({"extra": "train.warmup_ratio=0\njunk"}, "more keys, line 2: 'junk': expected KEY=VALUE"),
    ({"extra": "data.val=[/etc/hosts.jsonl]"}, "data.val: /etc/hosts.jsonl is outside the runs root"),
    ({"extra": "data.test=[../secret.jsonl]"}, "data.test: ../secret.jsonl is outside the runs root"),
    ({"extra": "model.cache_dir=~/elsewhere"}, "model.cache_dir: ~/elsewhere is outside the runs root"),
    # Sizes the model's config bounds: the started `dsft train` died in torch allocating 25 TB.
    ({"lora_r": "99999999999"}, "lora.r=99999999999: above the hidden size of tiny-deepseek-v3 (64"),
    ({"max_seq_len": str(2**63)}, f"train.max_seq_len={2**63}: above the 163840 positions tiny-deepseek-v3 places"),
    ({"extra": "eval.max_new_tokens=1e11"}, "eval.max_new_tokens=100000000000: above the 163840 positions"),
    ({"micro_batch_size": str(2**63)}, f"train.micro_batch_size={2**63}: with train.max_seq_len=64, a forward of"),
    ({"max_steps": str(2**63)}, "train.max_steps: must be at most 1,000,000,000"),
])
def test_a_bad_form_starts_nothing_and_names_the_field(client: TestClient, runs_root: Path, change: dict,
                                                        message: str) -> None:
    before = sorted(p.name for p in runs_root.iterdir())
    response = client.post("/api/runs", headers=POST, json={**FORM, **change})
    assert response.status_code in (400, 404) and message in response.json()["error"], response.text
    assert sorted(p.name for p in runs_root.iterdir()) == before


def test_an_empty_form_names_its_name_model_and_data_at_once(client: TestClient, runs_root: Path) -> None:
    """It named the name alone, then (once given) the model, then the data: one send each."""
    response = client.post("/api/runs", headers=POST, json={**FORM, "name": "", "model": "", "data": ""})
    assert response.status_code == 400
    assert response.json()["error"].splitlines() == [
        "3 problem(s) with this form", "  - name '': letters, digits, . _ - (and up to two / for a sub-directory)",
        "  - model: empty; give a tiny preset (tiny-deepseek-v3, tiny-r1-distill-qwen, tiny-deepseek-llm), "
        "ollama:NAME[:TAG], a .gguf file or a model directory (with config.json) under the runs root",
        "  - data: name at least one data file (or directory) under the runs root"]


@pytest.mark.skipif(Environment().has_cuda(), reason="checks the launcher refusal a CPU-only machine gives")
def test_a_config_dsft_train_would_refuse_starts_nothing_and_lists_every_problem(client: TestClient, runs_root: Path,
                                                                                 monkeypatch) -> None:
    """The form checked only this machine's problems; `dsft train`'s preflight then refused the config in the
    started process, the message only in its log, and the dashboard listed a run that had failed at once."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    before = sorted(p.name for p in runs_root.iterdir())
    extra = "eval.metric=nope\neval.early_stopping_patience=2\ntrain.distributed=deepspeed"
    response = client.post("/api/runs", headers=POST, json={**FORM, "extra": extra})  # FORM: val_ratio 0
    error = response.json()["error"]
    assert response.status_code == 400, response.text
    for problem in ("eval.metric: unknown metric 'nope'",
                    "eval.early_stopping_patience needs validation data",
                    "DeepSpeed runs in a launcher's processes, and this `dsft train` is one plain process"):
        assert problem in error, error
    assert sorted(p.name for p in runs_root.iterdir()) == before
    assert not (runs_root / ".dsft-ui").exists() or not list((runs_root / ".dsft-ui").iterdir())


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dashboard's own current directory, outside the runs root (where `dsft train` runs)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_a_relative_prepared_dir_in_an_extra_line_is_read_under_the_runs_root(
    client: TestClient, runs_root: Path, elsewhere: Path,
) -> None:
    """`dsft train` runs in the runs root: the form checked `data.prepared_dir=prep` in the dashboard's current
    directory, found no validation split there and refused early stopping that the run would have had."""
    prep = runs_root / "prep"
    prep.mkdir()
    for split in ("train", "val"):
        (prep / f"{split}.jsonl").write_text((runs_root / "d.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (prep / "data_report.json").write_text("{}", encoding="utf-8")
    extra = "data.prepared_dir=prep\neval.early_stopping_patience=2\neval.metric=nope"  # the last: nothing starts
    response = client.post("/api/runs", headers=POST, json={**FORM, "extra": extra})
    error = response.json()["error"]
    assert response.status_code == 400 and "eval.metric: unknown metric 'nope'" in error, response.text
    assert "needs validation data" not in error and "1 problem(s)" in error, error


def test_relative_data_files_in_extra_lines_are_checked_under_the_runs_root(
    client: TestClient, runs_root: Path, elsewhere: Path,
) -> None:
    """A data file the run would not find is refused in the form (it was accepted, and `dsft train` failed in its
    log); one under the runs root is found, wherever the dashboard was started."""
    (runs_root / "v.jsonl").write_text((runs_root / "d.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (elsewhere / "w.jsonl").write_text((runs_root / "d.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    before = sorted(p.name for p in runs_root.iterdir())
    response = client.post("/api/runs", headers=POST, json={**FORM, "extra": "data.val=[v.jsonl, w.jsonl]"})
    error = response.json()["error"]
    assert response.status_code == 400 and "data.val: " in error and "w.jsonl: no such file" in error, response.text
    assert error.count("no such file") == 1, error  # v.jsonl, under the root, is found
    assert sorted(p.name for p in runs_root.iterdir()) == before


def test_a_name_taken_while_the_form_was_checked_is_refused_by_name(client: TestClient, runs_root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Start training pressed twice (or in two tabs): both requests checked the name while it was free, the
    second then failed creating the directory with a server traceback and 500 Internal Server Error."""
    checked = launch.build_config

    def taken_meanwhile(root: Path, form: dict) -> tuple:
        name, cfg = checked(root, form)
        (root / name).mkdir()  # the other request's run, created while this one was being checked
        return name, cfg

    monkeypatch.setattr(launch, "build_config", taken_meanwhile)
    response = client.post("/api/runs", headers=POST, json=FORM)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "name new: new already exists under the runs root; choose a new name"}
    assert not runs.read_launch(runs_root, "new")  # nothing started


def test_stop_refuses_a_run_it_did_not_start(client: TestClient) -> None:
    response = client.post("/api/run/stop", params={"run": "alpha"}, headers=POST)
    assert response.status_code == 400 and "not started from this dashboard" in response.json()["error"]


def test_a_launched_run_whose_pid_now_belongs_to_another_process_is_not_stopped(client: TestClient,
                                                                               runs_root: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = processes.record(other.pid)  # the pid, now another process's: it started at another time
        runs.write_launch(runs_root, "sweep/trial-0", {**record, "start_ticks": record["start_ticks"] - 1,
                                                       "started": "then", "log": "none"})
        assert runs.summarize(runs_root, runs_root / "sweep" / "trial-0").status == "failed"
        response = client.post("/api/run/stop", params={"run": "sweep/trial-0"}, headers=POST)
        assert response.status_code == 409 and response.json() == {
            "error": "sweep/trial-0: its process has already ended"}
        assert other.poll() is None  # not signalled
        runs.write_launch(runs_root, "sweep/trial-0", {**record, "started": "now", "log": "none"})  # the real one
        assert runs.summarize(runs_root, runs_root / "sweep" / "trial-0").status == "running"
        assert "id=\"stop\"" in client.get("/run/sweep/trial-0").text
        assert client.post("/api/run/stop", params={"run": "sweep/trial-0"}, headers=POST).json() == {
            "stopping": "sweep/trial-0"}
        assert other.wait(timeout=10) == -signal.SIGTERM
        assert runs.summarize(runs_root, runs_root / "sweep" / "trial-0").status == "stopped"
    finally:
        other.kill()
        other.wait()


def test_a_second_stop_sends_no_second_sigterm(client: TestClient, runs_root: Path, tmp_path: Path) -> None:
    """Training takes a second SIGTERM as "stop at once, no checkpoint": Stop pressed in a second tab (or again after
    a reload, where the page offered the button anew) killed the run mid-step, without final/, instead of letting
    it finish the step. The second request is refused (409) and nothing more is signalled; the page no longer
    offers Stop once it has been asked for."""
    signals = tmp_path / "signals"
    code = ("import signal, sys, time\n"
            f"signal.signal(signal.SIGTERM, lambda *_: open({str(signals)!r}, 'a').write('TERM\\n'))\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
    training = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert training.stdout.readline() == "ready\n"  # its handler is installed
        runs.write_launch(runs_root, "sweep/trial-0", {**processes.record(training.pid), "started": "now",
                                                       "log": "none"})
        assert client.post("/api/run/stop", params={"run": "sweep/trial-0"}, headers=POST).json() == {
            "stopping": "sweep/trial-0"}
        wait_until(signals.is_file, 10, "the first SIGTERM to arrive")
        second = client.post("/api/run/stop", params={"run": "sweep/trial-0"}, headers=POST)
        assert second.status_code == 409 and "already asked to stop" in second.json()["error"], second.text
        page = client.get("/run/sweep/trial-0").text
        assert "Stop (graceful)" not in page and "stopping after the current step" in page, page
        time.sleep(0.5)  # a second signal, had one been sent, would have been handled by now
        assert signals.read_text() == "TERM\n" and training.poll() is None
    finally:
        training.kill()
        training.wait()


def test_the_log_shows_a_progress_bar_as_a_terminal_does(client: TestClient, runs_root: Path) -> None:
    """A progress bar redrawn with carriage returns (a GGUF model's conversion: 272 tensors) filled the run
    page's last 40 log lines with its every redraw, pushing the training lines out; a terminal shows the last."""
    log = runs_root / "train.log"
    bar = "".join(f"converting: {n}/272\r" for n in range(0, 273, 4)) + "converting: 272/272\n"
    log.write_text("model from m.gguf\n" + bar + "step 1/3  loss 1.2480\n", encoding="utf-8")
    runs.write_launch(runs_root, "alpha", {**processes.record(os.getpid()), "started": "now", "log": str(log)})
    assert launch.log_tail(runs_root, "alpha") == "model from m.gguf\nconverting: 272/272\nstep 1/3  loss 1.2480"
    jobs.jobs_dir(runs_root).mkdir(parents=True)
    (jobs.jobs_dir(runs_root) / "export-1.log").write_text(bar, encoding="utf-8")
    (jobs.jobs_dir(runs_root) / "export-1.json").write_text(json.dumps(
        {"id": "export-1", "kind": "export", "target": "alpha", "out": "alpha/export/hf", "command": [],
         **processes.record(os.getpid()), "started": "now"}), encoding="utf-8")
    assert jobs.read_job(runs_root, "export-1").log == "converting: 272/272"


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_start_then_stop_gracefully_writes_a_checkpoint(client: TestClient, runs_root: Path,
                                                        tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    form = {**FORM, "max_steps": "100000", "save_steps": "100000"}
    started = client.post("/api/runs", headers=POST, json=form).json()
    assert started == {"run": "new", "url": "/run/new"}
    run = runs_root / "new"
    assert (run / "config.yaml").is_file() and runs.summarize(runs_root, run).status in ("starting", "running")
    wait_until(lambda: len(runs.read_metrics_from(run)[0]) >= 2, 300, "two metrics rows")
    assert client.post("/api/run/stop", params={"run": "new"}, headers=POST).json() == {"stopping": "new"}
    launched = runs.read_launch(runs_root, "new")
    wait_until(lambda: not processes.alive(launched), 180, "the training process to end")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "stopped"
    step = info["global_step"]
    assert 2 <= step < 100000 and (run / "checkpoints" / f"checkpoint-{step}" / "adapter_model.safetensors").is_file()
    assert (run / "final" / "adapter_config.json").is_file()
    assert runs.summarize(runs_root, run).status == "stopped early"
    assert "id='log'" in client.get("/run/new").text


def fake_ollama_model(store: Path, name: str, tag: str) -> None:
    """An Ollama store holding one model, as ``ollama pull`` lays it out (manifest -> blob)."""
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    (store / "blobs" / ("sha256-" + "a" * 64)).write_bytes(b"GGUF")
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                "digest": "sha256:" + "a" * 64}]}), encoding="utf-8")


def test_gguf_files_and_ollama_models_are_model_choices(client: TestClient, runs_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    fake_ollama_model(tmp_path / "ollama", "smollm2", "135m")
    (runs_root / "models").mkdir()
    (runs_root / "models" / "small.gguf").write_bytes(b"GGUF")
    (tmp_path / "outside.gguf").write_bytes(b"GGUF")
    page = client.get("/new").text
    for offered in ("tiny-deepseek-v3", "models/small.gguf", "ollama:smollm2:135m"):
        assert f"<option value='{offered}'>" in page, offered
    _, cfg = launch.build_config(runs_root, {**FORM, "model": "models/small.gguf"})
    assert cfg.model.name_or_path == str(runs_root / "models" / "small.gguf")
    _, cfg = launch.build_config(runs_root, {**FORM, "model": "ollama:smollm2:135m"})
    assert cfg.model.name_or_path == "ollama:smollm2:135m"
    for model, message in [("ollama:qwen2:7b", "model ollama:qwen2:7b: not in the Ollama store"),
                           ("ollama:../../etc:x", "not an Ollama name"),
                           ("../outside.gguf", "outside the runs root")]:
        response = client.post("/api/runs", headers=POST, json={**FORM, "model": model})
        assert response.status_code in (400, 404) and message in response.json()["error"], (model, response.text)
    assert not (runs_root / "new").exists()


def test_a_prepared_directory_trains_alone(client: TestClient, runs_root: Path) -> None:
    prepared = runs_root / "prep"
    prepared.mkdir()
    (prepared / "data_report.json").write_text("{}", encoding="utf-8")
    (prepared / "train.jsonl").write_bytes((runs_root / "d.jsonl").read_bytes())
    _, cfg = launch.build_config(runs_root, {**FORM, "data": "prep", "val_ratio": "0.3"})
    assert cfg.data.prepared_dir == str(prepared)
    assert cfg.data.val_ratio == 0.1  # the schema default, unused: the prepared split is kept
    response = client.post("/api/runs", headers=POST, json={**FORM, "data": "prep, d.jsonl"})
    assert response.status_code == 400 and "train on it alone" in response.json()["error"]
    (prepared / "train.jsonl").write_text("", encoding="utf-8")  # every record rejected
    response = client.post("/api/runs", headers=POST, json={**FORM, "data": "prep"})
    assert response.status_code == 400 and "prep has no training records" in response.json()["error"]
    assert not (runs_root / "new").exists()


def test_key_value_lines_may_name_paths_inside_the_root(client: TestClient, runs_root: Path) -> None:
    (runs_root / "v.jsonl").write_text((runs_root / "d.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    _, cfg = launch.build_config(runs_root, {**FORM, "extra": "data.val=[v.jsonl]\ntrain.warmup_ratio=0"})
    assert cfg.data.val == [str(runs_root.resolve() / "v.jsonl")] and cfg.train.warmup_ratio == 0  # where the run reads it
    # The training file itself as data.val is refused, as dsft train refuses it (each record a duplicate of itself).
    with pytest.raises(DsftError, match="is also data.val"):
        launch.build_config(runs_root, {**FORM, "extra": "data.val=[d.jsonl]"})


def _values_at(node: object, parts: list[str]) -> list[object]:
    """The values at a dotted key (``*``: every item of a list), lists of paths flattened."""
    if not parts:
        return list(node) if isinstance(node, list) else [node]
    items = node if parts[0] == "*" else [node[parts[0]]]  # type: ignore[index]
    return [value for item in items for value in _values_at(item, parts[1:])]


def test_every_path_key_of_the_schema_is_made_absolute_under_the_root(runs_root: Path) -> None:
    """The dashboard resolves the keys the schema marks as paths (one owner): each, relative, becomes absolute
    under the runs root; a hub id in model.name_or_path stays as typed."""
    data = {"train": ["t.jsonl"], "val": ["v.jsonl"], "test": ["x.jsonl"],
            "clean": {"relevance_references": ["refs.txt"]},
            "augment": {"templates": [{"table": "rows.csv", "questions": ["{a}?"], "answer": "{a}"}],
                        "synonyms_zh": "cilin.txt", "synonyms_en": "wordnet", "cache": "a.jsonl"},
            "distill": {"cache": "d.jsonl"}}
    model = {"name_or_path": "deepseek-ai/DeepSeek-R1", "cache_dir": "cache"}
    covered = set()
    # data.mix and data.prepared_dir exclude each other: one config each.
    for extra in ({"mix": [{"path": "m.jsonl", "ratio": 0.2}]}, {"prepared_dir": "prep"}):
        cfg = DsftConfig.model_validate({"model": model, "data": {**data, **extra}})
        resolved = paths_under_root(runs_root, cfg)
        before, after = cfg.model_dump(mode="json"), resolved.model_dump(mode="json")
        for key in PATH_KEYS:
            typed = [v for v in _values_at(before, key.split(".")) if v is not None]
            covered.update([key] if typed else [])
            assert _values_at(after, key.split(".")) == [str(runs_root.resolve() / v) for v in typed] or not typed, key
        assert resolved.model.name_or_path == "deepseek-ai/DeepSeek-R1"
    assert covered == set(PATH_KEYS), "the test sets a value at every path key"
