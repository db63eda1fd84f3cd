"""Jobs from the dashboard: upload and prepare data, compare and export a run, each a detached CLI command.

What is refused is refused before anything starts, naming the field; nothing outside the runs root is
reachable; a job's status outlives the dashboard that started it.
"""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_browser import free_port

from dsft.errors import DsftError
from dsft.training import base_model
from dsft.ui import jobs, launch, prepare, processes, run_jobs
from dsft.ui.app import create_app

POST = {"x-dsft-ui": "1"}
HTML = {"accept": "text/html"}


def wait_job(root: Path, job_id: str, timeout: float = 180) -> jobs.Job:
    deadline = time.monotonic() + timeout
    while (job := jobs.read_job(root, job_id)).status == "running":
        assert time.monotonic() < deadline, f"job {job_id} still running"
        time.sleep(0.3)
    return job


def started(root: Path) -> list[str]:
    return sorted(p.name for p in jobs.jobs_dir(root).glob("*.json")) if jobs.jobs_dir(root).is_dir() else []


PREPARE = {"name": "prepared/reservoirs", "files": "d.jsonl", "model": "deepseek", "val_ratio": "0.2"}


@pytest.mark.parametrize("change, message", [
    ({"name": ""}, "name ''"),
    ({"name": "../up"}, "name '../up'"),
    ({"name": "alpha"}, "already exists"),
    ({"files": ""}, "files: name at least one"),
    ({"files": "../secret.jsonl"}, "files ../secret.jsonl: outside the runs root"),
    ({"files": "/etc/passwd"}, "relative to the runs root"),
    ({"files": "alpha"}, "is the root, a run or a prepared directory"),
    ({"files": "alpha/config.yaml"}, "unsupported file type .yaml"),
    ({"files": "nope.jsonl"}, "files nope.jsonl: no such file"),
    ({"format": "nope"}, "data.format"),
    ({"val_ratio": ""}, "data.val_ratio: Input should be a valid number"),  # was dropped: the default share
    ({"template": "nope"}, "template.name"),
    ({"val_ratio": "0.7", "test_ratio": "0.5"}, "val_ratio + test_ratio"),
    ({"model": "../outside"}, "model ../outside: outside the runs root"),
    ({"model": "nonsense"}, "model nonsense: no such file"),
    ({"extra": "data.no_such_key=1"}, "no_such_key"),
    ({"extra": "junk", "val_ratio": "0"}, "more keys, line 1: 'junk': expected KEY=VALUE"),
    ({"extra": "data.test=[/etc/hosts.jsonl]"}, "data.test: /etc/hosts.jsonl is outside the runs root"),
    ({"extra": "data.prepared_dir=.."}, "data.prepared_dir: .. is outside the runs root"),
])
def test_a_bad_preparation_starts_nothing_and_names_the_field(client: TestClient, runs_root: Path, change: dict,
                                                                message: str) -> None:
    response = client.post("/api/prepare", headers=POST, json={**PREPARE, **change})
    assert response.status_code in (400, 404) and message in response.json()["error"], response.text
    assert "SECRET" not in response.text and started(runs_root) == []
    assert not (runs_root / "prepared").exists()
    assert str(runs_root.resolve()) not in response.text  # paths as the dashboard names them: under the root


def test_prepare_from_the_browser_writes_the_report_rejects_and_removals(client: TestClient, runs_root: Path) -> None:
    got = client.post("/api/prepare", headers=POST, json=PREPARE).json()
    assert got["url"] == "/prepared/prepared/reservoirs"
    job = wait_job(runs_root, got["job"])
    assert job.status == "finished", job.log
    view = client.get("/api/prepared", params={"name": "prepared/reservoirs"}).json()
    assert view["report"]["read"] == 14 and view["report"]["rejected"] == 1
    assert view["report"]["removed"]["exact_dedup"] == 1 and view["report"]["kept"] == 12
    page = client.get("/prepared/prepared/reservoirs").text
    assert "removed: exact_dedup" in page and "the last message must be an assistant turn" in page
    # Records, messages and log name the files as the form did (and the CLI run in the root does): d.jsonl:14.
    assert "d.jsonl:14" in page and f"{runs_root.resolve()}/" not in page
    assert "/new?data=prepared/reservoirs" in page
    # The prepared directory is a data choice of the new-run form, trained as prepared.
    assert "<option value='prepared/reservoirs'>" in client.get("/new").text
    _, cfg = launch.build_config(runs_root, {"name": "on-prepared", "model": "tiny-deepseek-v3",
                                             "data": "prepared/reservoirs"})
    assert cfg.data.prepared_dir == str(runs_root / "prepared" / "reservoirs") and cfg.data.train == []
    # A second preparation into the same directory is refused.
    again = client.post("/api/prepare", headers=POST, json=PREPARE)
    assert again.status_code == 400 and "already exists" in again.json()["error"]


@pytest.mark.parametrize("change, message", [
    ({"on_error": "fail"}, "the last message must be an assistant turn"),
    ({"format": "alpaca"}, "no records left to train on: read 14, rejected 14"),  # the wrong format: all rejected
])
def test_bad_data_fails_the_job_with_the_clis_one_message(client: TestClient, runs_root: Path, change: dict,
                                                          message: str) -> None:
    got = client.post("/api/prepare", headers=POST, json={**PREPARE, **change}).json()
    job = wait_job(runs_root, got["job"])
    assert job.status == "failed" and message in job.error, job.log
    assert "Traceback" not in job.log and f"{runs_root.resolve()}/" not in job.error + job.log
    page = client.get("/prepared/prepared/reservoirs").text
    assert "id='prepare-message'" in page and "Train on it" not in page


def test_two_uploads_of_one_name_at_once_land_one_and_refuse_the_other(runs_root: Path) -> None:
    """A double-click on Upload: both requests passed the name check, wrote one shared partial file (the second
    truncating the first's) and the second then failed to rename it: a 500 with a traceback."""
    both_started = asyncio.Event()
    started = []

    async def body(text: bytes):
        yield text[:10]
        started.append(text)
        if len(started) == 2:
            both_started.set()
        await both_started.wait()  # each has opened its file before either ends
        yield text[10:]

    async def upload_twice():
        return await asyncio.gather(*(prepare.save_upload(runs_root, "same.jsonl", body(text))
                                      for text in (b"A" * 100 + b"\n", b"B" * 50 + b"\n")), return_exceptions=True)

    results = asyncio.run(upload_twice())
    landed = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(landed) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], DsftError) and str(refused[0]) == (
        "uploads/same.jsonl: already uploaded; rename the file or use the one there")
    assert (runs_root / "uploads" / "same.jsonl").stat().st_size == landed[0]["bytes"]  # one whole file
    assert [p.name for p in (runs_root / "uploads").iterdir()] == ["same.jsonl"]  # no partial left


def test_upload_lands_under_the_root_only(client: TestClient, runs_root: Path) -> None:
    body = (runs_root / "d.jsonl").read_bytes()
    got = client.post("/api/data/upload", params={"name": "mine.jsonl"}, headers=POST, content=body)
    assert got.json() == {"path": "uploads/mine.jsonl", "bytes": len(body)}
    assert (runs_root / "uploads" / "mine.jsonl").read_bytes() == body
    assert "uploads/mine.jsonl" in client.get("/prepare").text
    for name, message in [("mine.jsonl", "already uploaded"), ("../up.jsonl", "a plain name"),
                          ("a/b.jsonl", "a plain name"), (".hidden.jsonl", "a plain name"), ("x.py", "ending in"),
                          ("config.yaml", "ending in")]:
        response = client.post("/api/data/upload", params={"name": name}, headers=POST, content=body)
        assert response.status_code == 400 and message in response.json()["error"], (name, response.text)
    assert not (runs_root / "up.jsonl").exists() and not (runs_root.parent / "up.jsonl").exists()
    empty = client.post("/api/data/upload", params={"name": "empty.jsonl"}, headers=POST, content=b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    assert sorted(p.name for p in (runs_root / "uploads").iterdir()) == ["mine.jsonl"]  # no partial file left
    assert client.post("/api/data/upload", params={"name": "z.jsonl"}, content=body).status_code == 403


@pytest.mark.parametrize("url, body, message", [
    ("/api/compare", {"run": "alpha"}, "no final/"),
    ("/api/compare", {"run": "sweep/trial-0"}, "still running"),
    ("/api/compare", {"run": "../outside"}, "run ../outside: outside the runs root"),
    ("/api/compare", {"run": ""}, "run: empty; name a path under the runs root"),  # was 'empty path': which?
    ("/api/export", {}, "run: empty; name a path under the runs root"),
    ("/api/compare", {"run": "done", "data": "../secret.jsonl"}, "data ../secret.jsonl: outside the runs root"),
    ("/api/compare", {"run": "done", "data": "nope.jsonl"}, "data nope.jsonl: no such file"),
    ("/api/compare", {"run": "done", "data": "alpha"}, "is a directory"),
    ("/api/compare", {"run": "done"}, "done has no test or validation split"),
    # Named as the form labels them; 0 was read as "not given" (every prompt), as the form's "" still is.
    ("/api/compare", {"run": "done", "limit": "many"}, "prompts: a whole number >= 1, got 'many'"),
    ("/api/compare", {"run": "done", "limit": 0}, "prompts: a whole number >= 1, got 0"),
    ("/api/compare", {"run": "done", "limit": 2.5}, "prompts: a whole number >= 1, got 2.5"),
    ("/api/compare", {"run": "done", "max_new_tokens": "0"}, "max new tokens: a whole number >= 1, got '0'"),
    ("/api/export", {"run": "alpha"}, "no final/"),
    ("/api/export", {"run": "/etc"}, "relative to the runs root"),
    ("/api/export", {"run": "done", "format": "safetensors"}, "format safetensors: choose one of hf, adapter"),
    ("/api/export", {"run": "done", "name": "mine"}, "name mine: the Ollama model name; only for the ollama format"),
    ("/api/export", {"run": "done", "dtype": "int3"}, "dtype int3"),
])
def test_compare_and_export_refusals_start_nothing(client: TestClient, runs_root: Path, url: str, body: dict,
                                                   message: str) -> None:
    (runs_root / "done").mkdir()
    for name in ("config.yaml", "run.json"):
        (runs_root / "done" / name).write_bytes((runs_root / "alpha" / name).read_bytes())
    (runs_root / "done" / "final").mkdir()
    response = client.post(url, headers=POST, json=body)
    assert response.status_code in (400, 404) and message in response.json()["error"], response.text
    assert "SECRET" not in response.text and started(runs_root) == []


def test_job_routes_need_the_key_and_the_header(runs_root: Path) -> None:
    c = TestClient(create_app(runs_root, api_key="k3y"), base_url="http://127.0.0.1")
    for url in ("/api/jobs", "/api/job?id=x", "/api/prepared?name=alpha"):
        assert c.get(url).status_code == 401, url
    assert c.get("/prepare", headers=HTML, follow_redirects=False).status_code == 303
    for url in ("/api/prepare", "/api/compare", "/api/export", "/api/data/upload?name=a.jsonl", "/api/chat/stream",
                "/api/job/stop?id=x"):
        assert c.post(url, json={}, headers={"authorization": "Bearer k3y"}).status_code == 403, url  # no header
        assert c.post(url, json={}, headers=POST).status_code == 401, url  # no key
    assert not (runs_root / "uploads").exists()


@pytest.mark.parametrize("url", ["/api/job?id=../../outside", "/api/job?id=..%2Fx", "/api/prepared?name=../outside",
                                 "/prepared/..%2Foutside", "/api/prepared?name=/etc"])
def test_job_routes_reach_nothing_outside_the_root(client: TestClient, runs_root: Path, url: str) -> None:
    outside = runs_root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "data_report.json").write_text('{"read": "SECRET"}', encoding="utf-8")
    (outside / "train.jsonl").write_text("SECRET\n", encoding="utf-8")
    (runs_root.parent / "outside.json").write_text('{"id": "SECRET"}', encoding="utf-8")
    response = client.get(url)
    assert response.status_code in (400, 404) and "SECRET" not in response.text, (url, response.text)


def test_a_jobs_status_outlives_the_dashboard_that_started_it(runs_root: Path) -> None:
    ok = jobs.start_job(runs_root, "export", "alpha", "alpha/export/hf", ["--version"])
    bad = jobs.start_job(runs_root, "compare", "alpha", "alpha/compare", ["compare", "--tuned", "alpha", "--data",
                                                                           "missing.jsonl", "--out", "x"])
    assert wait_job(runs_root, ok).status == "finished"
    failed = wait_job(runs_root, bad)
    assert failed.status == "failed" and "missing.jsonl" in failed.error
    fresh = TestClient(create_app(runs_root), base_url="http://127.0.0.1")  # as after a restart
    listed = {j["id"]: j for j in fresh.get("/api/jobs", params={"target": "alpha"}).json()}
    assert listed[ok]["status"] == "finished" and listed[bad]["status"] == "failed"
    assert fresh.get("/api/job", params={"id": ok}).json()["log"].startswith("dsft ")
    page = fresh.get("/run/alpha").text
    assert f"data-job='{bad}' data-status='failed'" in page and "missing.jsonl" in page


def test_a_second_compare_of_a_run_waits_for_the_first(client: TestClient, runs_root: Path) -> None:
    (runs_root / "done" / "final").mkdir(parents=True)
    for name in ("config.yaml", "run.json"):
        (runs_root / "done" / name).write_bytes((runs_root / "alpha" / name).read_bytes())
    (runs_root / "done" / "data").mkdir()
    (runs_root / "done" / "data" / "val.jsonl").write_bytes((runs_root / "d.jsonl").read_bytes())
    jobs.jobs_dir(runs_root).mkdir(parents=True)
    (jobs.jobs_dir(runs_root) / "compare-1.json").write_text(json.dumps(  # a compare still running (this process)
        {"id": "compare-1", "kind": "compare", "target": "done", "out": "done/compare", "command": [],
         "pid": os.getpid(), "started": "now"}), encoding="utf-8")
    response = client.post("/api/compare", headers=POST, json={"run": "done"})
    assert response.status_code == 400 and "a compare is already running (compare-1)" in response.json()["error"]
    assert started(runs_root) == ["compare-1.json"]
    assert "data-running='1'" in client.get("/run/done").text  # the page follows it until it ends
    assert "class='stop-job' data-job='compare-1'" in client.get("/run/done").text


def test_a_running_preparation_has_a_stop_button(client: TestClient, runs_root: Path) -> None:
    jobs.jobs_dir(runs_root).mkdir(parents=True)
    record = {"id": "prepare-1", "kind": "prepare", "target": "p", "out": "p", "command": [],
              **processes.record(os.getpid()), "started": "now"}  # still running (this process)
    (jobs.jobs_dir(runs_root) / "prepare-1.json").write_text(json.dumps(record), encoding="utf-8")
    assert "class='stop-job' data-job='prepare-1'" in client.get("/prepared/p").text
    (jobs.jobs_dir(runs_root) / "prepare-1.json").write_text(json.dumps(  # as a stop leaves it once ended
        {**record, "pid": ended_pid(), "stopped": "2026-01-02 03:04:05"}), encoding="utf-8")
    page = client.get("/prepared/p").text
    assert "stopped</span> (started now, stopped at 2026-01-02 03:04:05)" in page and "stop-job" not in page


def ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("url, kwargs, message", [
    ("/api/prepare", {"json": ["not", "an", "object"]}, "body"),
    ("/api/compare", {"content": b"{not json", "headers": {"content-type": "application/json"}}, "body"),
    ("/api/data/upload", {"content": b"x"}, "query parameter name: missing; give the data file's plain name"),
])
def test_malformed_requests_get_one_message(client: TestClient, url: str, kwargs: dict, message: str) -> None:
    headers = {**POST, **kwargs.pop("headers", {})}
    response = client.post(url, headers=headers, **kwargs)
    assert response.status_code == 400 and message in response.json()["error"], response.text


class _SayWhenWaited:
    """A lock that sets ``waited`` when a thread finds it held (the second request waiting for the first)."""

    def __init__(self, waited: threading.Event) -> None:
        self.lock, self.waited = threading.Lock(), waited

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            self.waited.set()
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_a_double_click_on_export_starts_one_export(client: TestClient, runs_root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Two starts at once (a double-click on Export, or the form sent from two tabs) both passed the "is an export
    running?" check before either had started, and two `dsft export` wrote into the same RUN/export/gguf-q8_0. The
    second request, arriving while the first is starting its job, is now refused and one export runs."""
    (runs_root / "done" / "final").mkdir(parents=True)
    for name in ("config.yaml", "run.json"):
        (runs_root / "done" / name).write_bytes((runs_root / "alpha" / name).read_bytes())
    second_arrived, answers, outs = threading.Event(), {}, []
    monkeypatch.setattr(jobs, "STARTING", _SayWhenWaited(second_arrived), raising=False)

    def start_job(root: Path, kind: str, target: str, out: str, args: list[str], *_: str) -> str:
        outs.append(out)
        if len(outs) == 1:  # the first start: the second click arrives now
            second.start()
            assert second_arrived.wait(timeout=60), "the second request never reached the start"
        else:
            second_arrived.set()  # it got past the check, as the first had
        job_id = f"export-{len(outs)}"
        jobs.jobs_dir(root).mkdir(parents=True, exist_ok=True)
        (jobs.jobs_dir(root) / f"{job_id}.json").write_text(json.dumps(  # running: this process
            {"id": job_id, "kind": kind, "target": target, "out": out, "command": args,
             **processes.record(os.getpid()), "started": "now"}), encoding="utf-8")
        return job_id

    def post(which: str) -> None:
        answers[which] = client.post("/api/export", headers=POST, json={"run": "done", "format": "hf"})

    second = threading.Thread(target=post, args=("second",))
    monkeypatch.setattr(jobs, "start_job", start_job)
    post("first")
    second.join(timeout=60)
    assert answers["first"].json() == {"job": "export-1", "out": "done/export/hf"}
    assert answers["second"].status_code == 400, answers["second"].text
    assert "an export is already running (export-1)" in answers["second"].json()["error"]
    assert outs == ["done/export/hf"]


def test_export_runs_the_cli_command_verified_unless_unticked(client: TestClient, runs_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (runs_root / "done" / "final").mkdir(parents=True)
    for name in ("config.yaml", "run.json"):
        (runs_root / "done" / name).write_bytes((runs_root / "alpha" / name).read_bytes())
    commands = []
    monkeypatch.setattr(jobs, "start_job", lambda root, kind, target, out, args, *_: commands.append(args) or "job-1")
    first = client.post("/api/export", headers=POST, json={"run": "done", "format": "hf"}).json()
    assert first == {"job": "job-1", "out": "done/export/hf"}
    (runs_root / "done" / "export" / "hf").mkdir(parents=True)  # as the first export leaves it
    second = client.post("/api/export", headers=POST, json={"run": "done", "format": "hf", "dtype": "float16",
                                                             "verify": "off"}).json()
    assert second["out"] == "done/export/hf-float16"
    assert client.post("/api/export", headers=POST, json={"run": "done"}).json()["out"] == "done/export/hf-2"
    assert commands[:2] == [
        ["export", str(runs_root / "done"), "--out", str(runs_root / "done" / "export" / "hf"), "--format", "hf"],
        ["export", str(runs_root / "done"), "--out", str(runs_root / "done" / "export" / "hf-float16"), "--format", "hf",
         "--dtype", "float16", "--no-verify"]]


def test_compare_defaults_to_the_prepared_test_split_inside_the_root_only(client: TestClient, runs_root: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    commands = []
    monkeypatch.setattr(jobs, "start_job", lambda root, kind, target, out, args, *_: commands.append(args) or "job-1")
    (runs_root / "done" / "final").mkdir(parents=True)
    (runs_root / "done" / "run.json").write_bytes((runs_root / "alpha" / "run.json").read_bytes())
    config = (runs_root / "alpha" / "config.yaml").read_text(encoding="utf-8")
    for prepared in (runs_root.parent / "outside-prep", runs_root / "prep"):
        prepared.mkdir()
        (prepared / "test.jsonl").write_bytes((runs_root / "d.jsonl").read_bytes())
        (runs_root / "done" / "config.yaml").write_text(config + f"data:\n  prepared_dir: {prepared}\n",
                                                        encoding="utf-8")
        response = client.post("/api/compare", headers=POST, json={"run": "done", "limit": "2"})
        if prepared.parent != runs_root:
            assert response.status_code == 400 and "no test or validation split" in response.json()["error"]
    assert response.json()["out"] == "done/compare"
    assert commands == [["compare", "--tuned", str(runs_root / "done"), "--data", str(runs_root / "prep" / "test.jsonl"),
                         "--out", str(runs_root / "done" / "compare"), "--limit", "2"]]


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def test_stop_ends_a_running_job_and_its_record_says_stopped(client: TestClient, runs_root: Path) -> None:
    # A dsft command that runs until stopped: the dashboard itself, over another root.
    (runs_root.parent / "other").mkdir(exist_ok=True)
    job_id = jobs.start_job(runs_root, "export", "alpha", "alpha/export/hf",
                            ["ui", "--runs", str(runs_root.parent / "other"), "--port", str(free_port())])
    pid = json.loads((jobs.jobs_dir(runs_root) / f"{job_id}.json").read_text())["pid"]
    try:
        assert client.get("/api/job", params={"id": job_id}).json()["status"] == "running"
        page = client.get("/run/alpha").text
        assert f"class='stop-job' data-job='{job_id}'" in page
        stopped = client.post("/api/job/stop", params={"id": job_id}, headers=POST)
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
        assert stopped.json()["stopped"] and stopped.json()["error"] is None
        time.sleep(0.5)
        assert group_members(pid) == []  # the wrapper and the command, both ended
        again = client.post("/api/job/stop", params={"id": job_id}, headers=POST)
        assert again.status_code == 409 and again.json()["error"] == f"job {job_id}: already stopped; nothing to stop"
        fresh = TestClient(create_app(runs_root), base_url="http://127.0.0.1")  # as after a restart
        assert fresh.get("/api/job", params={"id": job_id}).json()["status"] == "stopped"
        page = fresh.get("/run/alpha").text
        assert f"data-job='{job_id}' data-status='stopped'" in page and "stopped at" in page
        assert "stop-job" not in page
    finally:
        for member in group_members(pid):
            os.kill(member, signal.SIGKILL)


def test_stop_answers_409_for_an_ended_job_and_404_for_an_unknown_one(client: TestClient, runs_root: Path) -> None:
    done = jobs.start_job(runs_root, "export", "alpha", "alpha/export/hf", ["--version"])
    assert wait_job(runs_root, done).status == "finished"
    response = client.post("/api/job/stop", params={"id": done}, headers=POST)
    assert response.status_code == 409 and response.json() == {"error": f"job {done}: already finished; nothing to stop"}
    assert jobs.read_job(runs_root, done).status == "finished"
    (runs_root.parent / "outside.json").write_text(json.dumps({"id": "x", "pid": os.getpid()}), encoding="utf-8")
    for job_id in ("nope", "../../outside", "..%2F..%2Foutside", ".hidden"):
        response = client.post("/api/job/stop", params={"id": job_id}, headers=POST)
        assert response.status_code == 404 and "no such job" in response.json()["error"], job_id
    assert client.post("/api/job/stop", params={"id": done}).status_code == 403  # no X-Dsft-Ui header


def live_child() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_job_whose_pid_now_belongs_to_another_process_is_not_running(client: TestClient, runs_root: Path) -> None:
    other = live_child()  # holds the recorded pid, but started at another time than the job recorded
    try:
        record = processes.record(other.pid)
        jobs.jobs_dir(runs_root).mkdir(parents=True)
        (jobs.jobs_dir(runs_root) / "prepare-1.json").write_text(json.dumps(
            {"id": "prepare-1", "kind": "prepare", "target": "p", "out": "p", "command": [], **record,
             "start_ticks": record["start_ticks"] - 1, "started": "then"}), encoding="utf-8")
        job = jobs.read_job(runs_root, "prepare-1")
        assert job.status == "failed" and "without an exit status" in job.error
        response = client.post("/api/job/stop", params={"id": "prepare-1"}, headers=POST)
        assert response.status_code == 409 and "already failed" in response.json()["error"]
        assert other.poll() is None  # the process that now has the pid was not signalled
    finally:
        other.kill()
        other.wait()


def test_a_job_id_with_a_nul_byte_is_no_job(client: TestClient) -> None:
    """It was a 500 (ValueError: embedded null byte, from opening the record)."""
    for method, url in (("get", "/api/job"), ("post", "/api/job/stop")):
        response = getattr(client, method)(url, params={"id": "x\x00y"}, headers=POST)
        assert response.status_code == 404 and response.json() == {"error": "job x\x00y: no such job"}


@pytest.mark.parametrize("rc", ["143", "130"])
def test_a_job_stopped_outside_the_dashboard_reads_stopped(runs_root: Path, rc: str) -> None:
    """``kill PID`` or Ctrl-C in a terminal: the command cleans up and exits 128+signal; that is a stop, not a
    failure, though the dashboard recorded no stop of its own."""
    jobs.jobs_dir(runs_root).mkdir(parents=True)
    (jobs.jobs_dir(runs_root) / "export-1.json").write_text(json.dumps(
        {"id": "export-1", "kind": "export", "target": "r", "out": "r/export/hf", "command": [], "pid": 2**22 + 7,
         "started": "then"}), encoding="utf-8")
    (jobs.jobs_dir(runs_root) / "export-1.log").write_text("writing...\nstopped (SIGTERM)\n", encoding="utf-8")
    (jobs.jobs_dir(runs_root) / "export-1.rc").write_text(rc + "\n", encoding="utf-8")
    job = jobs.read_job(runs_root, "export-1")
    assert (job.status, job.error) == ("stopped", None)


def done_run(root: Path, name: str = "done") -> Path:
    """A run that has finished with ``final/`` (its files copied from ``alpha``)."""
    (root / name / "final").mkdir(parents=True)
    for file in ("config.yaml", "run.json"):
        (root / name / file).write_bytes((root / "alpha" / file).read_bytes())
    return root / name


def test_ollama_export_runs_the_cli_command_with_the_model_name(client: TestClient, runs_root: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if "ollama" not in run_jobs.export_formats("lora"):
        pytest.skip("the gguf package is not installed: no gguf or ollama export is offered")
    done_run(runs_root)
    assert "<option>ollama</option>" in client.get("/run/done").text and "name='name'" in client.get("/run/done").text
    commands = []
    monkeypatch.setattr(jobs, "start_job", lambda root, kind, target, out, args, *_: commands.append(args) or "job-1")
    got = client.post("/api/export", headers=POST, json={"run": "done", "format": "ollama", "dtype": "q8_0",
                                                          "name": "reservoirs-r1"})
    assert got.json() == {"job": "job-1", "out": "done/export/ollama-q8_0"}
    assert client.post("/api/export", headers=POST, json={"run": "done", "format": "ollama"}).json()["out"] == \
        "done/export/ollama"
    assert commands == [
        ["export", str(runs_root / "done"), "--out", str(runs_root / "done" / "export" / "ollama-q8_0"), "--format",
         "ollama", "--dtype", "q8_0", "--name", "reservoirs-r1"],
        ["export", str(runs_root / "done"), "--out", str(runs_root / "done" / "export" / "ollama"), "--format",
         "ollama"]]  # no name: the CLI names the model after the run
    for name in ("-rf", "a b", "../x", "x" * 81, "医疗模型"):
        response = client.post("/api/export", headers=POST, json={"run": "done", "format": "ollama", "name": name})
        assert response.status_code == 400 and f"name {name}: not an Ollama model name" in response.json()["error"], name
    assert len(commands) == 2
    # The names dsft export --name takes, a tag included (the form refused 'medical-qa:v1', which the CLI keeps).
    for name in ("medical-qa:v1", "team/medical-qa", "x" * 80):
        assert client.post("/api/export", headers=POST, json={"run": "done", "format": "ollama", "name": name,
                                                              "dtype": "q8_0"}).status_code == 200, name
        assert commands[-1][-2:] == ["--name", name]


# Ollama's own verdict on each name (types/model/name.go, the one check behind `ollama create` and `ollama run`):
# [[host/]namespace/]model[:tag], each part starting with a letter, digit or '_', '.' not in the namespace, a
# host's ':port' taken, 80 characters a part (the host 350).
OLLAMA_TAKES = {"medical-qa:v1": True, "team/Medical_QA:Q4_K_M": True, "a..b": True, "_private:v1": True,
                "localhost:5000/team/model:v1": True, "x" * 80: True, "x" * 81: False, "m:" + "t" * 81: False,
                "my.team/model": False, "a/b/c/d": False, "a b": False, "-rf": False, "../x": False, "x:": False,
                "医疗模型": False, "ｍodel:7b": False}


@pytest.mark.parametrize("name", list(OLLAMA_TAKES), ids=[n[:24] for n in OLLAMA_TAKES])
def test_every_place_that_takes_an_ollama_name_takes_the_names_ollama_takes(
        client: TestClient, runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli,
        name: str) -> None:
    """``dsft export --name``, the dashboard's export name, the dashboard's model ``ollama:NAME`` and a command's
    ``ollama:NAME`` (``dsft serve``) ask one owner (dsft.models.ollama_tags), and take what Ollama takes. Each kept
    its own copy: export took 'a..b', which the dashboard's model field then refused as no Ollama name; the model
    field took 81 characters, which export refused; all took 'my.team/model' (Ollama refuses a '.' in a
    namespace) and refused '_private:v1' (Ollama takes it)."""
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "store"))  # an empty store: a name taken is not found
    monkeypatch.setattr(run_jobs, "export_formats", lambda method: ["hf", "ollama"])  # with or without gguf
    monkeypatch.setattr(jobs, "start_job", lambda *args, **kwargs: "job-1")
    done_run(runs_root)
    code, _, err = run_cli(["export", str(tmp_path / "absent"), "--format", "ollama", "--name", name, "--out",
                            str(tmp_path / "o")])
    assert code == 2, err
    export_takes = f"--name {name}: not an Ollama model name" not in err
    response = client.post("/api/export", headers=POST, json={"run": "done", "format": "ollama", "name": name})
    assert response.status_code == 200 or "not an Ollama model name" in response.json()["error"], response.text
    dashboard_export_takes = response.status_code == 200
    form = {"name": "new", "model": f"ollama:{name}", "data": "d.jsonl", "method": "lora", "max_steps": "4"}
    error = client.post("/api/runs", headers=POST, json=form).json()["error"]
    assert ("not an Ollama name" in error) != ("not in the Ollama store" in error), error
    dashboard_model_takes = "not in the Ollama store" in error
    code, _, err = run_cli(["serve", f"ollama:{name}"])
    assert code == 2 and ("is not an Ollama name" in err) != ("not in the Ollama store" in err), err
    command_takes = "not in the Ollama store" in err
    assert (export_takes, dashboard_export_takes, dashboard_model_takes, command_takes) == (OLLAMA_TAKES[name],) * 4
    assert not (runs_root / "new").exists()


def test_an_ollama_export_shows_its_model_name_commands_and_modelfile(client: TestClient, runs_root: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = runs_root / "alpha" / "export" / "ollama"
    out.mkdir(parents=True)
    (out / "Modelfile").write_text('FROM ./model.gguf\nTEMPLATE """<x>"""\n', encoding="utf-8")
    (out / "export.json").write_text(json.dumps(  # as dsft export --format ollama --name r1-mine writes it
        {"format": "ollama", "dtype": "q8_0", "verification": {"max_abs_logit_diff": 0.02, "top1_agreement": 1.0},
         "ollama": {"name": "r1-mine", "modelfile": "Modelfile", "create": "ollama create r1-mine -f Modelfile"}}),
        encoding="utf-8")
    monkeypatch.setattr(shutil, "which", lambda command, *a, **k: None)  # no ollama on this machine
    page = client.get("/run/alpha").text
    assert "<td>export/ollama/export.json</td><td>ollama</td><td>q8_0</td>" in page
    assert "max_abs_logit_diff 0.02" in page
    assert "Ollama model <code>r1-mine</code>" in page
    assert f"cd {out}\nollama create r1-mine -f Modelfile\nollama run r1-mine" in page
    assert "FROM ./model.gguf\nTEMPLATE &quot;&quot;&quot;&lt;x&gt;&quot;&quot;&quot;" in page
    assert "is not installed on this machine" in page
    monkeypatch.setattr(shutil, "which", lambda command, *a, **k: "/usr/bin/" + command)
    assert "is not installed on this machine" not in client.get("/run/alpha").text
    (out / "Modelfile").unlink()
    (out / "Modelfile").symlink_to(runs_root.parent / "secret.jsonl")  # a Modelfile leaving the root: not shown
    page = client.get("/run/alpha").text
    assert "Ollama model <code>r1-mine</code>" in page and "SECRET" not in page


@pytest.mark.slow
def test_an_ollama_export_from_the_dashboard_end_to_end(client: TestClient, runs_root: Path, tiny_model_dir) -> None:
    """A real ``dsft export --format ollama`` job on a full run of the tiny V3 preset: verified GGUF, Modelfile,
    model name and commands on the run page, on a machine without Ollama as with it."""
    if "ollama" not in run_jobs.export_formats("full"):
        pytest.skip("the gguf package is not installed: no ollama export is offered")
    run = runs_root / "full-run"
    shutil.copytree(tiny_model_dir("tiny-deepseek-v3"), run / "final")
    (run / "run.json").write_text(json.dumps({"status": "finished", "method": "full", "template": "deepseek-r1",
                                              "model_name_or_path": "tiny-deepseek-v3"}), encoding="utf-8")
    got = client.post("/api/export", headers=POST, json={"run": "full-run", "format": "ollama", "name": "tiny-r1"})
    job = wait_job(runs_root, got.json()["job"], timeout=300)
    assert job.status == "finished", job.log
    assert "ollama create tiny-r1 -f Modelfile" in job.log
    record = json.loads((run / "export" / "ollama" / "export.json").read_text(encoding="utf-8"))
    assert record["format"] == "ollama" and record["ollama"]["name"] == "tiny-r1"
    assert record["verification"]["top1_agreement"] == 1.0
    page = client.get("/run/full-run").text
    assert "Ollama model <code>tiny-r1</code>" in page and "FROM ./model.gguf" in page
    assert "<td>export/ollama/export.json</td><td>ollama</td>" in page and "max_abs_logit_diff" in page


@pytest.mark.slow
def test_a_stopped_export_job_reads_stopped_leaves_no_partial_export_and_its_name_is_free_again(
        client: TestClient, runs_root: Path, tiny_model_dir) -> None:
    """Stop a real ``dsft export`` job once it has written its first files: the command removes them before it
    ends (exit status 143, its one line in the log), so the next export of the run goes to the same place."""
    run = runs_root / "full-run"
    shutil.copytree(tiny_model_dir("tiny-deepseek-v3"), run / "final")
    (run / "run.json").write_text(json.dumps({"status": "finished", "method": "full", "template": "deepseek-r1",
                                              "model_name_or_path": "tiny-deepseek-v3"}), encoding="utf-8")
    out = run / "export" / "hf"
    job_id = client.post("/api/export", headers=POST, json={"run": "full-run", "format": "hf"}).json()["job"]
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(out.iterdir())):  # mid-way: files written, verification to come
        assert jobs.read_job(runs_root, job_id).status == "running", jobs.read_job(runs_root, job_id).log
        assert time.monotonic() < deadline, "no export file in 300 s"
        time.sleep(0.01)
    assert client.post("/api/job/stop", params={"id": job_id}, headers=POST).status_code == 200
    job = wait_job(runs_root, job_id)
    assert job.status == "stopped" and job.stopped and job.error is None, job.log
    assert (jobs.jobs_dir(runs_root) / f"{job_id}.rc").read_text().strip() == "143"
    assert job.log.splitlines()[-1] == "stopped (SIGTERM)" and "Traceback" not in job.log, job.log
    assert not out.exists()
    again = client.post("/api/export", headers=POST, json={"run": "full-run", "format": "hf"}).json()
    assert again["out"] == "full-run/export/hf"
    assert wait_job(runs_root, again["job"], timeout=300).status == "finished"
    assert (out / "export.json").is_file()


def test_a_job_started_on_another_host_is_stopped_there(client: TestClient, runs_root: Path) -> None:
    jobs.jobs_dir(runs_root).mkdir(parents=True)
    record = {"id": "export-1", "kind": "export", "target": "alpha", "out": "alpha/export/hf", "command": [],
              **processes.record(os.getpid()), "host": "elsewhere", "started": "now"}  # a root shared between hosts
    (jobs.jobs_dir(runs_root) / "export-1.json").write_text(json.dumps(record), encoding="utf-8")
    assert jobs.read_job(runs_root, "export-1").status == "running"  # not told from here; its .rc file tells
    response = client.post("/api/job/stop", params={"id": "export-1"}, headers=POST)
    assert response.status_code == 409 and response.json() == {"error": "job export-1: runs on host elsewhere; stop it "
                                                                         "there"}
    (jobs.jobs_dir(runs_root) / "export-1.rc").write_text("0\n", encoding="utf-8")
    assert jobs.read_job(runs_root, "export-1").status == "finished"


def test_files_may_be_a_json_list_as_well_as_the_forms_text(client: TestClient, runs_root: Path) -> None:
    """A script posting {"files": ["d.jsonl"]} was refused with "['d.jsonl']: no such file or directory": the
    list's Python text read as one path."""
    from dsft.errors import DsftError
    from dsft.ui.prepare import prepare_args

    _, args = prepare_args(runs_root, {**PREPARE, "files": ["d.jsonl"]})
    assert str((runs_root / "d.jsonl").resolve()) in args
    with pytest.raises(DsftError) as refused:
        prepare_args(runs_root, {**PREPARE, "files": ["d.jsonl", "nope.jsonl"]})
    assert str(refused.value) == "files nope.jsonl: no such file or directory under the runs root"


def _moved_run(root: Path, name: str, method: str, gone: Path) -> Path:
    """A finished run whose recorded base model is nowhere on this machine (moved without it)."""
    run = root / name
    (run / "final").mkdir(parents=True)
    (run / "final" / ("adapter_config.json" if method == "lora" else "config.json")).write_text("{}", encoding="utf-8")
    (run / "config.yaml").write_bytes((root / "alpha" / "config.yaml").read_bytes())
    (run / "run.json").write_text(json.dumps({"status": "finished", "method": method, "template": "deepseek-r1",
                                              "base_model": str(gone), "model_name_or_path": str(gone),
                                              "final": "final"}), encoding="utf-8")
    return run


def test_a_run_whose_base_model_is_gone_says_what_to_do_in_the_dashboard(client: TestClient, runs_root: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Export and compare started a job whose `dsft export`/`dsft compare` failed saying 'pass the base model with
    --base-model PATH_OR_ID', a flag the form has no field for. Refused before a job starts, with the library's
    message (whose base, the paths tried) and the dashboard's way out, as its chat says it."""
    commands = []
    monkeypatch.setattr(jobs, "start_job", lambda root, kind, target, out, args, *_: commands.append(args) or "job-1")
    gone = runs_root.parent / "gone"
    _moved_run(runs_root, "lora", "lora", gone)
    _moved_run(runs_root, "full", "full", gone)
    for url, body, terminal in (
            ("/api/export", {"run": "lora", "format": "hf"}, "export from a terminal: dsft export lora --base-model "
             "PATH_OR_ID --out DIR --format hf"),
            ("/api/compare", {"run": "lora", "data": "d.jsonl"}, "compare from a terminal: dsft compare --tuned lora "
             "--base-model PATH_OR_ID --data FILE --out DIR"),
            # A full run's weights export alone, but its base model is compare's base side.
            ("/api/compare", {"run": "full", "data": "d.jsonl"}, "compare from a terminal: dsft compare --tuned full "
             "--base-model PATH_OR_ID --data FILE --out DIR")):
        response = client.post(url, headers=POST, json=body)
        said = response.json()["error"]
        assert response.status_code == 400, said
        assert said.splitlines()[0] == (f"{body['run']}: the run's base model was not found on this machine; tried: "
                                        f"{gone}"), said
        assert said.splitlines()[1:] == [f"  - put the base model back where the first path tried says, then start it "
                                         f"again here; or {terminal}"], said
    assert commands == [] and started(runs_root) == []
    assert client.post("/api/export", headers=POST, json={"run": "full", "format": "hf"}).status_code == 200
    assert commands == [["export", str(runs_root / "full"), "--out", str(runs_root / "full" / "export" / "hf"),
                         "--format", "hf"]]


@pytest.mark.parametrize(("url", "body", "terminal"), [
    ("/api/export", {"run": "lora", "format": "hf"},
     "export from a terminal: dsft export lora --base-model PATH_OR_ID --out DIR --format hf"),
    ("/api/compare", {"run": "lora", "data": "d.jsonl"},
     "compare from a terminal: dsft compare --tuned lora --base-model PATH_OR_ID --data FILE --out DIR"),
])
def test_a_base_model_gone_after_the_check_fails_the_job_with_the_dashboards_hint(
        client: TestClient, runs_root: Path, monkeypatch: pytest.MonkeyPatch, url: str, body: dict, terminal: str) -> None:
    """The check before a job starts passed (the base model was there), then the base went: the failed job said the
    command's 'pass the base model with --base-model PATH_OR_ID', a field the form has none of."""
    gone = runs_root.parent / "gone"
    _moved_run(runs_root, "lora", "lora", gone)
    monkeypatch.setattr(run_jobs, "check_source", lambda run_dir: None)  # found at the check ...
    monkeypatch.setattr(run_jobs, "tuned_run_of", lambda run_dir: type("Found", (), {"check_base_model": lambda self: None})())
    response = client.post(url, headers=POST, json=body)
    assert response.status_code == 200, response.json()
    job = wait_job(runs_root, response.json()["job"])  # ... gone when the command looks for it
    assert job.status == "failed"
    assert job.error.splitlines() == [
        f"lora: the run's base model was not found on this machine; tried: {gone}",
        f"  - put the base model back where the first path tried says, then start it again here; or {terminal}"], \
        job.error
    assert doctest.testmod(base_model).failed == 0  # printed_with_hint's worked examples
