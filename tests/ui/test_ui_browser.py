"""The dashboard in a real browser (headless Chromium): runs, live charts while training writes metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dsft.ui import app as ui_app
from dsft.ui import jobs
from dsft.ui.app import create_app
from dsft.ui.chat import ChatEngines

from ui_browser import fill, free_port, serve, text, wait_for
from ui_data import write_data

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def points(driver, chart: str) -> int:
    found = driver.find_elements("id", f"chart-{chart}")
    return int(found[0].get_attribute("data-points")) if found else 0


def test_runs_page_then_a_run_with_its_charts(browser, dashboard: str, shots: Path) -> None:
    browser.get(dashboard + "/")
    rows = {r.get_attribute("data-run"): r.text for r in browser.find_elements("css selector", "#runs tr[data-run]")}
    assert set(rows) == {"alpha", "sweep/trial-0"}
    assert "finished" in rows["alpha"] and "eval_loss 1.25" in rows["alpha"]
    browser.find_element("link text", "alpha").click()
    wait_for(lambda: points(browser, "loss") == 5, 20, "the loss chart's 4 train + 1 eval points")
    assert points(browser, "lr") == 4 and points(browser, "tokens_per_s") == 4
    assert text(browser, "#status") == "finished"
    lines = browser.find_elements("css selector", "#chart-loss polyline")
    assert [line.get_attribute("data-column") for line in lines] == ["loss", "eval_loss"]
    browser.save_screenshot(str(shots / "run-page.png"))


@pytest.mark.slow
def test_the_loss_chart_gains_points_while_a_run_trains(browser, runs_root: Path, tmp_path: Path,
                                                        tiny_model_dir, shots: Path) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    data = write_data(tmp_path / "d.jsonl")
    run = runs_root / "live"
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  name_or_path: tiny-deepseek-v3\n", encoding="utf-8")
    command = [sys.executable, "-m", "dsft", "train", str(config), "--out", str(run), "--set", f"data.train=[{data}]",
               "--set", "data.val_ratio=0", "--set", "train.max_steps=40", "--set", "train.save_steps=100",
               "--set", "train.micro_batch_size=2", "--set", "train.max_seq_len=64", "--set", "lora.r=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    training = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for base in serve(create_app(runs_root, poll_s=0.2)):
            wait_for(lambda: (run / "metrics.jsonl").is_file() or training.poll() is not None, 180,
                     "the first metrics line")
            browser.get(f"{base}/run/live")
            first = wait_for(lambda: points(browser, "loss"), 30, "the first loss point")
            browser.save_screenshot(str(shots / "live-early.png"))
            wait_for(lambda first=first: points(browser, "loss") > first, 120,
                     "more loss points as training writes them")
            wait_for(lambda: text(browser, "#status") == "finished", 180, "the run to finish")
            assert points(browser, "loss") == 40
            browser.save_screenshot(str(shots / "live-finished.png"))
            # Chat with what it trained, base beside it.
            training.wait(timeout=120)
            browser.get(f"{base}/run/live")
            browser.find_element("link text", "Chat with this run").click()
            browser.find_element("id", "message").send_keys("Which reservoir is R3?")
            browser.find_element("id", "max_tokens").clear()
            browser.find_element("id", "max_tokens").send_keys("8")
            browser.find_element("id", "side").click()
            browser.find_element("css selector", "#chat-form button").click()
            wait_for(lambda: browser.find_element("id", "chat-form").get_attribute("data-turns") == "2", 120,
                     "the first answer")
            for column in ("tuned", "base"):
                turns = browser.find_elements("css selector", f"#chat-{column} .turn.assistant")
                assert len(turns) == 1 and "error" not in turns[0].get_attribute("class"), column
            assert browser.find_element("id", "chat-state").text == ""
            browser.save_screenshot(str(shots / "chat.png"))
    finally:
        try:
            output = training.communicate(timeout=120)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            training.kill()
            output = training.communicate()[0].decode(errors="replace")
    assert training.returncode == 0, output[-2000:]


def test_mask_view_colours_the_known_supervised_tokens(browser, dashboard: str, runs_root: Path,
                                                       shots: Path) -> None:
    from selenium.webdriver.support.ui import Select  # optional test dependency, like the browser fixture

    conversation = {"messages": [{"role": "user", "content": "Which river is longest?"},
                                 {"role": "assistant", "content": "The Nile is the longest."}]}
    (runs_root / "chat.jsonl").write_text(json.dumps(conversation) + "\n", encoding="utf-8")
    browser.get(dashboard + "/data")
    browser.find_element("id", "source").send_keys("chat.jsonl")
    browser.find_element("id", "tokenizer").send_keys("deepseek")
    Select(browser.find_element("id", "template")).select_by_visible_text("deepseek-v3")
    browser.find_element("css selector", "#mask-form button").click()
    wait_for(lambda: browser.find_element("id", "mask").get_attribute("data-rendered"), 60, "the rendered mask")
    supervised = "".join(s.get_attribute("textContent") for s in browser.find_elements("css selector", "#mask .sup"))
    assert supervised == "The Nile is the longest.<｜end▁of▁sentence｜>"
    first = browser.find_element("css selector", "#mask .tok")
    assert "special" in first.get_attribute("class") and "ctx" in first.get_attribute("class")
    green = browser.find_element("css selector", "#mask .sup:not(.special)").value_of_css_property("background-color")
    assert green == "rgba(191, 232, 200, 1)"  # the supervised colour, not the context's transparent background
    count = len(browser.find_elements("css selector", "#mask .sup"))
    assert f"{count} supervised" in browser.find_element("id", "mask-counts").text
    browser.save_screenshot(str(shots / "mask.png"))


def test_the_new_run_forms_problems_are_listed_one_a_line(browser, dashboard: str, runs_root: Path,
                                                          shots: Path) -> None:
    """Every problem was run into one paragraph ('config: 3 problem(s) - train.lr: ... - train.max_steps: ...'),
    hard to read with eight of them; each is now on its own line, as the CLI prints them."""
    write_data(runs_root / "d.jsonl")
    browser.get(dashboard + "/new")
    fill(browser, {"name": "bad", "model": "tiny-deepseek-v3", "data": "d.jsonl", "max_steps": "-5", "lr": "fast",
                   "max_seq_len": "0"})
    browser.find_element("css selector", "#new-form button").click()
    shown = wait_for(lambda: "problem(s)" in text(browser, "#new-error") and text(browser, "#new-error"), 60,
                     "the refusal")
    browser.save_screenshot(str(shots / "new-run-problems.png"))
    lines = [line.strip() for line in shown.splitlines()]
    assert lines[0] == "config: 3 problem(s)", shown
    assert sorted(lines[1:]) == ["- train.lr: Input should be a valid number, unable to parse string as a number, "
                                 "got 'fast'", "- train.max_seq_len: Input should be greater than or equal to 16, got 0",
                                 "- train.max_steps: must be -1 (use epochs) or > 0, got -5"], shown
    assert not (runs_root / "bad").exists()


@pytest.mark.slow
def test_start_a_run_from_the_form_and_see_it_finish(browser, dashboard: str, runs_root: Path, tmp_path: Path,
                                                     tiny_model_dir, shots: Path) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    write_data(runs_root / "d.jsonl")
    browser.get(dashboard + "/new")
    fields = {"name": "from-form", "model": "tiny-deepseek-v3", "data": "d.jsonl", "max_steps": "6",
              "max_seq_len": "64", "micro_batch_size": "2", "lora_r": "4", "val_ratio": "0", "save_steps": "3"}
    fill(browser, fields)
    browser.find_element("id", "lr").clear()
    browser.find_element("id", "lr").send_keys("fast")  # a wrong value first: refused, nothing started
    browser.find_element("css selector", "#new-form button").click()
    wait_for(lambda: "train.lr" in text(browser, "#new-error"), 30, "the refusal")
    assert not (runs_root / "from-form").exists()
    browser.find_element("id", "lr").clear()
    browser.find_element("id", "lr").send_keys("5e-3")
    browser.find_element("css selector", "#new-form button").click()
    wait_for(lambda: browser.current_url.endswith("/run/from-form"), 30, "the run page")
    wait_for(lambda: text(browser, "#status") == "finished", 240, "the run to finish")
    assert points(browser, "loss") == 6
    browser.save_screenshot(str(shots / "from-form.png"))
    info = json.loads((runs_root / "from-form" / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 6


def test_signed_in_with_a_key_the_page_scripts_upload_and_refresh(browser, runs_root: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "mine.jsonl", n=3)
    for base in serve(create_app(runs_root, api_key="k3y", poll_s=0.2)):
        browser.get(base + "/prepare")
        assert "/login" in browser.current_url
        browser.find_element("name", "key").send_keys("k3y")
        browser.find_element("css selector", "form button").click()
        wait_for(lambda: browser.current_url.endswith("/prepare"), 20, "the prepare page after signing in")
        browser.find_element("id", "upload").send_keys(str(data))
        browser.find_element("css selector", "#upload-form button").click()
        wait_for(lambda: "uploaded uploads/mine.jsonl" in text(browser, "#upload-state"), 20, "the upload")
        assert (runs_root / "uploads" / "mine.jsonl").read_bytes() == data.read_bytes()
        browser.get(base + "/")
        wait_for(lambda: browser.find_element("id", "runs").get_attribute("data-refreshed"), 20,
                 "the runs page refreshing through the API")


def test_a_running_job_stops_from_its_button(browser, dashboard: str, runs_root: Path, shots: Path) -> None:
    # A dsft command that runs until stopped: the dashboard itself, over another root.
    (runs_root.parent / "other").mkdir(exist_ok=True)
    job_id = jobs.start_job(runs_root, "export", "alpha", "alpha/export/hf",
                            ["ui", "--runs", str(runs_root.parent / "other"), "--port", str(free_port())])
    pid = json.loads((jobs.jobs_dir(runs_root) / f"{job_id}.json").read_text())["pid"]
    try:
        browser.get(dashboard + "/run/alpha")
        browser.find_element("css selector", f"button.stop-job[data-job='{job_id}']").click()
        row = f"#jobs tr[data-job='{job_id}']"
        wait_for(lambda: "stopped at" in text(browser, row), 20, "the job to read stopped")
        assert browser.find_element("css selector", row).get_attribute("data-status") == "stopped"
        assert not browser.find_elements("css selector", "button.stop-job")
        browser.save_screenshot(str(shots / "job-stopped.png"))
    finally:
        if jobs.read_job(runs_root, job_id).status == "running":
            os.killpg(pid, signal.SIGKILL)


def test_letters_in_the_compare_forms_prompts_are_refused_naming_the_field(browser, dashboard: str, runs_root: Path,
                                                                          shots: Path) -> None:
    """Chromium drops letters typed into a number field: the form sent prompts "" and the comparison ran on every
    prompt of the eval file. The form now refuses it in its message line, naming the field, and starts nothing."""
    run = runs_root / "done"
    (run / "final").mkdir(parents=True)
    (run / "data").mkdir()
    for name in ("config.yaml", "run.json"):
        (run / name).write_bytes((runs_root / "alpha" / name).read_bytes())
    write_data(run / "data" / "test.jsonl", n=3)
    browser.get(dashboard + "/run/done")
    prompts = browser.find_element("css selector", "#compare-form input[name=limit]")
    for typed, message in (("abc", "prompts: a whole number is needed (at least 1)"),
                           ("0", "prompts: must be at least 1, got 0")):
        prompts.clear()
        prompts.send_keys(typed)
        browser.find_element("css selector", "#compare-form button").click()
        # Said right under the form (it was under the jobs list, below every comparison and export).
        wait_for(lambda message=message: text(browser, "#compare-form + .error") == message, 10,
                 f"the refusal of {typed!r}")
    browser.save_screenshot(str(shots / "compare-prompts-refused.png"))
    assert jobs.list_jobs(runs_root) == [] and browser.find_element("css selector", "#compare-form button").is_enabled()


def test_the_chat_forms_max_tokens_is_bounded_by_the_runs_serve_limit(browser, dashboard: str, shots: Path) -> None:
    """The field had no max: any number was sent (and the model loaded before the serve app refused it)."""
    browser.get(dashboard + "/chat/alpha?checkpoint=checkpoint-4")
    fill(browser, {"max_tokens": "100000", "message": "Which river is longest?"})
    browser.find_element("css selector", "#chat-form button").click()
    wait_for(lambda: text(browser, "#chat-state") == "max tokens: must be at most 2048, got 100000", 10, "the refusal")
    assert browser.find_element("id", "message").get_attribute("value") == "Which river is longest?"  # nothing lost
    assert not browser.find_elements("css selector", ".turn")
    browser.save_screenshot(str(shots / "chat-max-tokens-refused.png"))


def test_send_is_off_while_a_reply_streams(browser, dashboard: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Send while a reply streamed sent the question again: the history then held two questions before
    their answers. The reply here comes from a stand-in engine that holds its end until the test releases it."""
    release = threading.Event()

    async def held_reply(self, *args):
        yield {"side": "tuned", "content": "thinking of it"}
        await asyncio.to_thread(release.wait, 60)
        yield {"side": "tuned", "done": True, "finish_reason": "stop", "usage": {}}

    monkeypatch.setattr(ChatEngines, "stream", held_reply)
    monkeypatch.setattr(ui_app, "sources", lambda *args: [])  # no weights to find: the stand-in answers
    browser.get(dashboard + "/chat/alpha")
    browser.find_element("id", "message").send_keys("Which river is longest?")
    send = browser.find_element("css selector", "#chat-form button")
    send.click()
    wait_for(lambda: "thinking of it" in text(browser, "#chat-tuned"), 20, "the first piece of the reply")
    assert not send.is_enabled()
    browser.find_element("id", "message").send_keys("again")
    browser.execute_script("document.getElementById('chat-form').requestSubmit()")  # Enter, a script: still one
    release.set()
    wait_for(lambda: browser.find_element("id", "chat-form").get_attribute("data-turns") == "2", 20, "the reply's end")
    assert len(browser.find_elements("css selector", "#chat-tuned .turn.user")) == 1 and send.is_enabled()
    assert browser.find_element("id", "message").get_attribute("value") == "again"  # kept for the next Send


def test_upload_without_a_file_names_the_field(browser, dashboard: str) -> None:
    browser.get(dashboard + "/prepare")
    browser.find_element("css selector", "#upload-form button").click()
    assert text(browser, "#upload-state") == "upload a data file: none chosen; choose one first"


def test_the_run_page_follows_the_best_evaluation_so_far(browser, dashboard: str, runs_root: Path) -> None:
    """The run page's best metric was the one of the page load: it showed '-' all through a run's training."""
    run = runs_root / "sweep" / "trial-0"
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k != "best_metric"}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    browser.get(dashboard + "/run/sweep/trial-0")
    cell = ".facts [data-col=best_metric]"
    wait_for(lambda: points(browser, "loss") == 1, 20, "the first loss point")
    assert text(browser, cell) == "–"
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 2, "eval_loss": 2.5}) + "\n")
    wait_for(lambda: text(browser, cell) == "eval_loss 2.5", 20, "the first evaluation as the best so far")
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "eval_loss": 2.25}) + "\n")
    wait_for(lambda: text(browser, cell) == "eval_loss 2.25", 20, "a better evaluation")
    (run / "run.json").write_text(json.dumps({**info, "status": "finished"}))  # run.json's best, once it has ended
    wait_for(lambda: text(browser, cell) == "eval_loss 1.25", 20, "the best run.json records")
