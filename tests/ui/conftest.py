"""What the dashboard tests share: run directories as ``dsft train`` leaves them (written directly, no
training), data files, an HTTP client over a runs root, and the browser with the dashboard served for it."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ui_browser import CHROMIUM_FLAGS, missing_browser, serve
from ui_data import write_data

from dsft.ui import processes
from dsft.ui.app import create_app


def write_run(root: Path, name: str, status: str = "finished", steps: int = 4) -> Path:
    run = root / name
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-4").mkdir()
    (run / "data").mkdir()
    (run / "config.yaml").write_text("model:\n  name_or_path: tiny-deepseek-v3\ntrain:\n  method: lora\n"
                                     f"  max_steps: {steps}\n", encoding="utf-8")
    info = {"status": status, "method": "lora", "model_name_or_path": "tiny-deepseek-v3", "template": "deepseek-r1",
            "global_step": steps, "best_metric": {"eval_loss": 1.25}, "final": "final"}
    (run / "run.json").write_text(json.dumps(info), encoding="utf-8")
    rows = [{"step": s, "loss": 3.0 - 0.1 * s, "lr": 1e-3, "grad_norm": 1.5, "tokens_per_s": 900.0}
            for s in range(1, steps + 1)] + [{"step": steps, "eval_loss": 1.25}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run / "data_report.json").write_text(json.dumps(
        {"read": 10, "rejected": 1, "added": {}, "removed": {"exact_dedup": 2}, "kept": 7,
         "splits": {"train": 6, "val": 1}}), encoding="utf-8")
    (run / "data" / "rejects.jsonl").write_text('{"where": "d.jsonl:3", "reasons": ["empty answer"]}\n',
                                                encoding="utf-8")
    (run / "data" / "removed.jsonl").write_text('{"step": "exact_dedup", "where": "d.jsonl:5"}\n', encoding="utf-8")
    (run / "compare").mkdir()
    (run / "compare" / "report.md").write_text("# base vs tuned\n", encoding="utf-8")
    (run / "export" / "hf").mkdir(parents=True)
    (run / "export" / "hf" / "export.json").write_text(json.dumps(
        {"format": "hf", "verification": {"max_abs_logit_diff": 0.0}}), encoding="utf-8")
    return run


@pytest.fixture
def runs_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "runs"
    root.mkdir()
    write_run(root, "alpha")
    write_run(root, "sweep/trial-0", status="running", steps=2)
    yield root
    # A training process the test started from the dashboard must not outlive the test.
    for path in (root / ".dsft-ui").glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["pid"] != os.getpid() and processes.alive(record):
            os.kill(record["pid"], signal.SIGKILL)


@pytest.fixture
def client(runs_root: Path) -> TestClient:
    """The dashboard over ``runs_root`` holding ``d.jsonl`` (12 records, a duplicate, a reject); beside the
    root, outside it, ``secret.jsonl`` that no request may reach."""
    write_data(runs_root / "d.jsonl", n=12, flawed=True)
    (runs_root.parent / "secret.jsonl").write_text("SECRET\n", encoding="utf-8")
    return TestClient(create_app(runs_root), base_url="http://127.0.0.1")


@pytest.fixture
def dashboard(runs_root: Path) -> Iterator[str]:
    """The dashboard over ``runs_root`` served on a free loopback port, for the browser tests."""
    yield from serve(create_app(runs_root, poll_s=0.2))


@pytest.fixture
def shots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where a browser test saves its screenshots: ``$DSFT_UI_SCREENSHOTS/TEST`` (CI keeps them there as
    artefacts), else the test's temporary directory."""
    keep = os.environ.get("DSFT_UI_SCREENSHOTS")
    where = Path(keep) / request.node.name if keep else tmp_path / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    reason = missing_browser()
    if reason:
        pytest.skip(f"browser test: {reason}")
    from selenium import webdriver  # optional test dependency: only where the browser tests run
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
