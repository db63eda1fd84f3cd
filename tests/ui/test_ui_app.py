"""Every dashboard endpoint through an HTTP client: pages, live events, the runs-root fence, auth."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_browser import free_port

from dsft.ui import runs
from dsft.ui.app import create_app
from dsft.ui.request_bodies import MAX_BODY_BYTES

HTML = {"accept": "text/html"}


def client(root: Path, **kw) -> TestClient:
    return TestClient(create_app(root, poll_s=0.01, **kw), base_url="http://127.0.0.1")


def events(text: str) -> list[tuple[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], fields["data"]))
    return out


def test_runs_page_lists_every_run(runs_root: Path) -> None:
    c = client(runs_root)
    page = c.get("/").text
    assert 'href="/run/alpha"' in page and 'href="/run/sweep/trial-0"' in page
    listed = {r["name"]: r for r in c.get("/api/runs").json()}
    assert listed["alpha"]["status"] == "finished" and listed["alpha"]["step"] == 4
    assert listed["alpha"]["best_metric"] == {"eval_loss": 1.25} and listed["alpha"]["method"] == "lora"
    assert listed["sweep/trial-0"]["status"] == "running"
    assert listed["alpha"]["started"]


def test_a_running_runs_best_metric_is_its_best_evaluation_so_far(runs_root: Path) -> None:
    """run.json gets best_metric only when the run ends: a run being watched showed none while its evaluations
    were already in metrics.jsonl. Step 0's evaluation measures the base model and is no candidate."""
    run = runs_root / "sweep" / "trial-0"
    info = json.loads((run / "run.json").read_text())
    del info["best_metric"]
    (run / "run.json").write_text(json.dumps(info))
    evals = [{"step": 0, "eval_loss": 0.5}, {"step": 1, "eval_loss": 2.5}, {"step": 2, "eval_loss": 2.25}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    c = client(runs_root)
    listed = {r["name"]: r for r in c.get("/api/runs").json()}
    assert listed["sweep/trial-0"]["status"] == "running"
    assert listed["sweep/trial-0"]["best_metric"] == {"eval_loss": 2.25}
    assert listed["alpha"]["best_metric"] == {"eval_loss": 1.25}  # a finished run: run.json's
    assert '<td data-col="best_metric">eval_loss 2.25</td>' in c.get("/").text
    assert '<th>best metric</th><td data-col="best_metric">eval_loss 2.25</td>' in c.get("/run/sweep/trial-0").text
    # The run's eval.metric, higher better: its best is the highest.
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "eval:\n  metric: eval_accuracy\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 1, "eval_accuracy": 0.25}, {"step": 2, "eval_accuracy": 0.75}, {"step": 3, "eval_accuracy": 0.5}]))
    assert {r["name"]: r for r in c.get("/api/runs").json()}["sweep/trial-0"]["best_metric"] == {"eval_accuracy": 0.75}


def test_run_page_shows_config_data_checkpoints_reports_exports(runs_root: Path) -> None:
    page = client(runs_root).get("/run/alpha").text
    assert "name_or_path: tiny-deepseek-v3" in page
    assert "removed: exact_dedup" in page and "empty answer" in page  # the report and the rejects file
    assert page.index("checkpoint-2") < page.index("checkpoint-4")
    assert "/file?path=alpha/compare/report.md" in page
    assert "max_abs_logit_diff" in page
    assert 'id="charts" data-run="alpha"' in page


def test_run_json_and_report_file(runs_root: Path) -> None:
    c = client(runs_root)
    data = c.get("/api/run", params={"run": "alpha"}).json()
    assert [r["step"] for r in data["metrics"] if "loss" in r] == [1, 2, 3, 4]
    assert c.get("/file", params={"path": "alpha/compare/report.md"}).text == "# base vs tuned\n"
    assert c.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")


def test_events_stream_rows_then_done_for_a_finished_run(runs_root: Path) -> None:
    got = events(client(runs_root).get("/api/run/events", params={"run": "alpha"}).text)
    assert [name for name, _ in got] == ["rows", "status", "best", "done"]
    assert len(json.loads(got[0][1])) == 5 and json.loads(got[1][1]) == "finished"
    assert json.loads(got[2][1]) == {"eval_loss": 1.25}


def test_events_resume_from_last_event_id(runs_root: Path) -> None:
    size = (runs_root / "alpha" / "metrics.jsonl").stat().st_size
    with (runs_root / "alpha" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 5, "loss": 2.0}) + "\n" + '{"step": 6, "lo')  # a line still being written
    got = events(client(runs_root).get("/api/run/events", params={"run": "alpha"},
                                       headers={"last-event-id": str(size)}).text)
    assert json.loads(got[0][1]) == [{"step": 5, "loss": 2.0}]


def test_an_event_id_past_the_end_of_the_metrics_reads_them_from_the_start(runs_root: Path) -> None:
    """A Last-Event-ID past the file (a run written anew since the page connected, or a made-up id) ended the stream
    with no event and a traceback ('cannot fit 'int' into an offset-sized integer') in the dashboard's log."""
    for last in ("99999999999999999999", "100000"):
        got = events(client(runs_root).get("/api/run/events", params={"run": "alpha"},
                                           headers={"last-event-id": last}).text)
        assert [name for name, _ in got] == ["rows", "status", "best", "done"] and len(json.loads(got[0][1])) == 5


def test_a_launched_run_whose_process_is_gone_is_not_running(runs_root: Path) -> None:
    runs.write_launch(runs_root, "sweep/trial-0", {"pid": 2 ** 22 + 12345, "started": "now"})
    assert runs.summarize(runs_root, runs_root / "sweep" / "trial-0").status == "failed"
    runs.write_launch(runs_root, "sweep/trial-0", {"pid": os.getpid(), "started": "now"})
    assert runs.summarize(runs_root, runs_root / "sweep" / "trial-0").status == "running"


@pytest.mark.parametrize("url", [
    "/run/%2E%2E", "/run/..%2Foutside", "/run/alpha%2F..%2F..%2Foutside", "/api/run?run=../outside", "/api/run?run=/etc",
    "/api/run/events?run=..%2Foutside", "/file?path=../outside/secret.md", "/file?path=/etc/passwd",
    "/file?path=alpha/../../outside/secret.md", "/file?path=escape/secret.md", "/run/escape",
    "/static/..%2Fapp.py", "/file?path=alpha/run.py",
])
def test_nothing_outside_the_runs_root_is_reachable(runs_root: Path, url: str) -> None:
    outside = runs_root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.md").write_text("SECRET", encoding="utf-8")
    (outside / "config.yaml").write_text("SECRET: 1\n", encoding="utf-8")
    (outside / "run.json").write_text('{"status": "SECRET"}', encoding="utf-8")
    (runs_root / "alpha" / "run.py").write_text("SECRET", encoding="utf-8")
    if not (runs_root / "escape").exists():
        (runs_root / "escape").symlink_to(outside)  # a symlink out of the root
    response = client(runs_root).get(url)
    assert response.status_code in (400, 404), (url, response.status_code)
    assert "SECRET" not in response.text
    assert "escape" not in [r["name"] for r in client(runs_root).get("/api/runs").json()]


def test_api_key_guards_every_page_and_api(runs_root: Path) -> None:
    c = client(runs_root, api_key="k3y")
    for url in ("/api/runs", "/api/run?run=alpha", "/api/run/events?run=alpha", "/file?path=alpha/compare/report.md"):
        assert c.get(url).status_code == 401, url
    page = c.get("/run/alpha", headers=HTML, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/run/alpha"
    assert c.get("/api/runs", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/runs", headers={"authorization": "Bearer k3y"}).status_code == 200
    assert c.get("/static/style.css").status_code == 200  # the sign-in page needs its style
    wrong = c.post("/login", content="key=nope&next=/run/alpha", follow_redirects=False,
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert wrong.headers["location"].startswith("/login?wrong=1")
    ok = c.post("/login", content="key=k3y&next=//evil.example/", follow_redirects=False,
                headers={"content-type": "application/x-www-form-urlencoded"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no redirect off the site
    assert c.get("/run/alpha").status_code == 200  # the cookie now set


def test_posts_need_the_dashboard_header_and_hosts_are_checked(runs_root: Path) -> None:
    c = client(runs_root, allowed_hosts=["127.0.0.1", "localhost"])
    assert c.post("/api/run/stop?run=alpha").status_code == 403
    assert c.get("/", headers={"host": "rebound.example"}).status_code == 400
    assert c.get("/").status_code == 200


def test_missing_runs_and_bad_roots(runs_root: Path, tmp_path: Path) -> None:
    c = client(runs_root)
    assert c.get("/run/nope", headers=HTML).status_code == 404
    assert "no such file" in c.get("/api/run", params={"run": "nope"}).json()["error"]
    (runs_root / "plain").mkdir()
    assert "not a run directory" in c.get("/api/run", params={"run": "plain"}).json()["error"]
    with pytest.raises(Exception, match="not a directory"):
        create_app(tmp_path / "missing")


def test_a_run_that_ended_without_final_says_so_and_how_to_continue(runs_root: Path) -> None:
    """A run stopped at once (a second Ctrl-C, a killed process) reads `interrupted`, has checkpoints and no final/;
    its page said compare and export would come 'once the run has finished', which it never will."""
    info = json.loads((runs_root / "alpha" / "run.json").read_text(encoding="utf-8"))
    (runs_root / "alpha" / "run.json").write_text(json.dumps({**info, "status": "interrupted"}), encoding="utf-8")
    page = client(runs_root).get("/run/alpha").text
    assert "Once the run has finished" not in page, page
    assert "This run ended (interrupted) without final/" in page
    assert "dsft train alpha/config.yaml --out alpha --resume auto" in page
    assert "Once the run has finished" in client(runs_root).get("/run/sweep/trial-0").text  # running: it will


def test_an_unknown_address_is_answered_as_the_dashboard_answers(runs_root: Path) -> None:
    """A mistyped page showed the bare JSON '{"detail":"Not Found"}' in the browser, without the dashboard's page
    around it, and the API answered in another shape than its {"error"} everywhere else."""
    c = client(runs_root)
    page = c.get("/runs/alpha", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "/runs/alpha: no such page" in page.text and '<a href="/new">New run</a>' in page.text
    assert c.get("/api/nothing").json() == {"error": "/api/nothing: no such page"}
    wrong = c.get("/api/export")
    assert wrong.status_code == 405 and wrong.json() == {"error": "GET /api/export: Method Not Allowed"}


def test_cli_refuses_empty_key_and_open_bind_without_key(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli(["ui", "--runs", str(tmp_path), "--api-key", ""])
    assert code == 2 and "--api-key" in err
    code, _, err = run_cli(["ui", "--runs", str(tmp_path), "--host", "0.0.0.0"])
    assert code == 2 and "needs --api-key" in err


def test_cli_refuses_a_runs_root_that_does_not_exist(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped --runs must not become a new, empty dashboard; only the default runs/ is created on first use."""
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    port = str(free_port())  # the CLI refuses a port in use, and a dashboard may run on this machine's 7861
    code, out, err = run_cli(["ui", "--runs", str(tmp_path / "nowhere"), "--port", port])
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"--runs {tmp_path / 'nowhere'}: no such directory" in err
    assert not (tmp_path / "nowhere").exists() and not served  # refused before any server
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["ui", "--runs", str(tmp_path / "file"), "--port", port])
    assert code == 2 and "is not a directory" in err and not served
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(["ui", "--port", port])
    assert code == 0 and (tmp_path / "runs").is_dir() and served


def test_cli_serves_the_dashboard_on_loopback(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    (tmp_path / "runs").mkdir()
    port = free_port()
    code, out, _ = run_cli(["ui", "--runs", str(tmp_path / "runs"), "--port", str(port)])
    assert code == 0 and served["host"] == "127.0.0.1" and served["port"] == port
    assert f"http://127.0.0.1:{port}/" in out
    client = TestClient(served["app"], base_url="http://127.0.0.1")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400  # no DNS rebinding



def test_cli_guards_any_ipv4_loopback_bind_against_dns_rebinding(run_cli, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.0/8 is loopback, so it needs no key, and gets the same Host-header guard as 127.0.0.1."""
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    code, _, err = run_cli(["ui", "--runs", str(tmp_path), "--host", "127.0.0.2", "--port", str(free_port())])
    assert code == 0 and served["host"] == "127.0.0.2", err
    client = TestClient(served["app"], base_url="http://127.0.0.2")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_a_run_on_a_prepared_directory_lists_its_rejects_inside_the_root_only(runs_root: Path) -> None:
    for where in (runs_root / "prep", runs_root.parent / "outside-prep"):
        where.mkdir()
        (where / "rejects.jsonl").write_text(json.dumps({"where": "d.jsonl:9", "reasons": [f"from {where.name}"]}) + "\n",
                                             encoding="utf-8")
    run = runs_root / "alpha"
    for name in ("rejects.jsonl", "removed.jsonl"):
        (run / "data" / name).unlink()
    config = (run / "config.yaml").read_text(encoding="utf-8")
    (run / "config.yaml").write_text(config + f"data:\n  prepared_dir: {runs_root / 'prep'}\n", encoding="utf-8")
    assert "from prep" in client(runs_root).get("/run/alpha").text
    (run / "config.yaml").write_text(config + f"data:\n  prepared_dir: {runs_root.parent / 'outside-prep'}\n",
                                     encoding="utf-8")
    assert "from outside-prep" not in client(runs_root).get("/run/alpha").text


def test_paths_under_the_root_are_shown_relative_to_it(runs_root: Path) -> None:
    """The dashboard hands the commands it starts absolute paths, so the runs table showed a model directory under
    the root as /.../runs/models/tiny and the rejected records named /.../runs/uploads/d.jsonl:3, where the forms
    take (and the CLI run in the root names) models/tiny and uploads/d.jsonl:3."""
    root = runs_root.resolve()
    run = runs_root / "alpha"
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "model_name_or_path": f"{root}/models/tiny"}))
    (run / "data" / "rejects.jsonl").write_text(json.dumps({"where": f"{root}/uploads/d.jsonl:3",
                                                            "reasons": ["empty answer"]}) + "\n")
    c = client(runs_root)
    assert {r["name"]: r for r in c.get("/api/runs").json()}["alpha"]["model"] == "models/tiny"
    assert "<td>models/tiny</td>" in c.get("/").text
    page = c.get("/run/alpha").text
    assert "<th>model</th><td>models/tiny</td>" in page and "uploads/d.jsonl:3" in page
    assert f"{root}/" not in page


def test_a_body_that_is_not_json_is_named_as_such(runs_root: Path) -> None:
    """It said 'body.1: JSON decode error' (a character offset read as a field), where dsft serve names the fault."""
    c = client(runs_root)
    answer = c.post("/api/runs", content=b"{x", headers={"x-dsft-ui": "1", "content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("the request body is not valid JSON (Expecting property name"), \
        answer.json()


JSON_ROUTES = ["/api/runs", "/api/chat", "/api/chat/stream", "/api/mask", "/api/prepare", "/api/compare", "/api/export"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("path", JSON_ROUTES)
def test_a_body_not_sent_as_json_names_the_header(runs_root: Path, path: str, content_type: str | None) -> None:
    """``curl -d '{...}'`` sends a form: the answer was pydantic's 'body: Input should be a valid dictionary'."""
    headers = {"x-dsft-ui": "1", **({"content-type": content_type} if content_type else {})}
    answer = client(runs_root).post(path, content=b'{"run": "alpha"}', headers=headers)
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert message.startswith("the request body must be JSON sent with Content-Type: application/json; "), message
    assert (content_type or "no Content-Type header") in message and "-H 'Content-Type: application/json'" in message


@pytest.mark.parametrize(("body", "kind"), [(b"[1, 2]", "an array"), (b'"alpha"', "a string"), (b"null", "null")])
@pytest.mark.parametrize("path", JSON_ROUTES)
def test_a_json_body_that_is_not_an_object_says_what_it_is(runs_root: Path, path: str, body: bytes, kind: str) -> None:
    answer = client(runs_root).post(path, content=body, headers={"x-dsft-ui": "1", "content-type": "application/json"})
    assert answer.status_code == 400
    assert re.fullmatch(r"the request body must be a JSON object, e\.g\. \{.*\}; this one is " + kind,
                        answer.json()["error"]), answer.json()


def test_an_empty_or_undecodable_or_huge_body_says_so(runs_root: Path) -> None:
    """An empty body was 'body: Field required', GBK 'POST /api/chat: There was an error parsing the body', and a
    body of any size was read whole (a run name of megabytes then failed the file system: a 500)."""
    c = client(runs_root)
    headers = {"x-dsft-ui": "1", "content-type": "application/json"}
    answer = c.post("/api/chat", content=b"", headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (
        400, 'the request body is empty; send the fields as a JSON object, e.g. {"run": "...", "messages": [...]}')
    answer = c.post("/api/chat", content='{"run": "发"}'.encode("gbk"), headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("the request body is not valid UTF-8 (byte 0xB7 at byte 9); it reads as "
                                             "GBK/GB18030"), answer.json()
    huge = b'{"run": "' + b"a" * MAX_BODY_BYTES + b'"}'
    answer = c.post("/api/export", content=huge, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"] == (f"the request body has {len(huge)} bytes; this server accepts at most "
                                      f"{MAX_BODY_BYTES}; data files go through /api/data/upload")
    # A data file is no JSON form: the upload takes one larger than the cap.
    answer = c.post("/api/data/upload", params={"name": "big.jsonl"}, content=huge, headers={"x-dsft-ui": "1"})
    assert answer.status_code == 200 and answer.json()["bytes"] == len(huge)


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/api/export", {"run": "a" * 300},
     f"run {'a' * 60}... (300 chars): not a path this machine can hold (File name too long)"),
    ("/api/compare", {"run": "a/" * 3000},
     f"run {'a/' * 30}... (6000 chars): not a path this machine can hold (File name too long)"),
    ("/api/mask", {"source": "up\ud800"}, "source up\\ud800: not a path: it holds a lone UTF-16 surrogate, half of a "
                                          "character (at 2)"),
    ("/api/prepare", {"name": "p", "files": "a\x00b"}, "files: holds a NUL character (at 1), which no path can"),
    ("/api/chat", {"run": "alpha", "checkpoint": "\ud800", "messages": [{"role": "user", "content": "hi"}]},
     "checkpoint \\ud800: not in alpha/checkpoints (have: checkpoint-2, checkpoint-4)"),
])
def test_a_name_no_file_system_holds_is_refused_naming_the_field(runs_root: Path, path: str, body: dict,
                                                                 message: str) -> None:
    """A part over 255 bytes and a lone surrogate ("\\ud800" in JSON) failed the file system's calls, and a refusal
    quoting a surrogate failed to encode: 500s. A NUL was called 'empty'."""
    answer = client(runs_root).post(path, content=json.dumps(body).encode(),
                                    headers={"x-dsft-ui": "1", "content-type": "application/json"})
    assert (answer.status_code, answer.json()["error"]) == (400, message)
    assert client(runs_root).get("/api/run", params={"run": "b" * 300}).status_code == 400
