"""A whole fine-tune from the browser on a tiny preset: data -> train -> compare -> chat -> export.

Headless Chromium clicks through the dashboard as a person would: upload a data file, prepare it, train on
the prepared directory, watch the runs page follow the run, compare base vs tuned, export (hf, and gguf
where the ``gguf`` package is installed) and chat, each answer assembled from streamed pieces, the base's
beside the tuned one. Screenshots of each page: see the ``shots`` fixture.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from dsft.ui.run_jobs import export_formats

from ui_data import write_data
from ui_browser import fill, left_the_page, text, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def prepare_data(browser, base: str, data: Path, shots: Path) -> None:
    browser.get(base + "/prepare")
    browser.find_element("id", "upload").send_keys(str(data))  # a file from outside the root, uploaded
    browser.find_element("css selector", "#upload-form button").click()
    wait_for(lambda: "uploaded uploads/reservoirs.jsonl" in text(browser, "#upload-state"), 30, "the upload")
    assert browser.find_element("id", "files").get_attribute("value") == "uploads/reservoirs.jsonl"
    fill(browser, {"name": "prepared/reservoirs", "val_ratio": "0", "test_ratio": "0.2"})
    browser.find_element("css selector", "#prepare-form button").click()
    wait_for(lambda: browser.current_url.endswith("/prepared/prepared/reservoirs"), 30, "the prepared page")
    wait_for(lambda: text(browser, "#data-report"), 120, "the data report once prepared")
    report = text(browser, "#data-report")
    assert "read 26" in report and "rejected 1" in report and "removed: exact_dedup 1" in report
    assert "the last message must be an assistant turn" in text(browser, "details[data-file='rejects.jsonl']")
    assert "exact duplicate of" in text(browser, "details[data-file='removed.jsonl']")
    browser.save_screenshot(str(shots / "1-prepared.png"))
    # Its loss mask, rendered as it was prepared: the answers supervised.
    browser.find_element("link text", "See its loss mask").click()
    wait_for(lambda: browser.find_element("id", "mask").get_attribute("data-rendered"), 60, "the rendered mask")
    supervised = "".join(s.get_attribute("textContent") for s in browser.find_elements("css selector", "#mask .sup"))
    assert re.search(r"R\d+ was completed in 19\d\d\.<｜end▁of▁sentence｜>$", supervised), supervised
    browser.back()


def train(browser, base: str, runs_root: Path, shots: Path) -> None:
    browser.find_element("link text", "Train on it").click()
    assert browser.find_element("id", "data").get_attribute("value") == "prepared/reservoirs"
    fill(browser, {"name": "reservoirs-lora", "model": "tiny-deepseek-v3", "max_steps": "8", "lr": "5e-3",
                   "max_seq_len": "64", "micro_batch_size": "2", "lora_r": "4", "save_steps": "4"})
    browser.find_element("css selector", "#new-form button").click()
    wait_for(lambda: browser.current_url.endswith("/run/reservoirs-lora"), 60, "the run page")
    # The runs page follows the run without a reload.
    browser.get(base + "/")
    browser.execute_script("window.notReloaded = true")
    row = "#runs tr[data-run='reservoirs-lora'] [data-col=status]"
    wait_for(lambda: text(browser, row) == "finished", 300, "the runs page to show the run finished")
    assert browser.execute_script("return window.notReloaded") is True
    assert text(browser, "#runs tr[data-run='reservoirs-lora'] [data-col=steps]") == "8 / 8"
    browser.save_screenshot(str(shots / "2-runs.png"))
    info = json.loads((runs_root / "reservoirs-lora" / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 8


def compare(browser, base: str, shots: Path) -> None:
    browser.get(base + "/run/reservoirs-lora")
    form = browser.find_element("id", "compare-form")
    form.find_element("name", "limit").clear()
    form.find_element("name", "limit").send_keys("3")
    form.find_element("name", "max_new_tokens").clear()
    form.find_element("name", "max_new_tokens").send_keys("8")
    form.find_element("css selector", "button").click()
    wait_for(lambda: "compare" in text(browser, "#jobs"), 30, "the compare job listed")
    wait_for(lambda: text(browser, "#comparisons table"), 300, "the comparison on the run page")
    table = text(browser, "#comparisons table")
    assert table.startswith("metric base tuned delta") and "\nf1 " in table and "\nrougeL " in table, table
    assert "3 prompts from prepared/reservoirs/test.jsonl" in text(browser, "#comparisons")


def exports_shown(driver) -> dict[str, str]:
    """Format -> row text of the run page's exports table ({} while the page reloads)."""
    from selenium.common.exceptions import WebDriverException

    try:
        rows = [r.find_elements("css selector", "td") for r in driver.find_elements("css selector", "#exports tr")]
        return {cells[1].text: " ".join(c.text for c in cells) for cells in rows if cells}
    except WebDriverException as exc:
        if not left_the_page(exc):
            raise
        return {}


def export(browser, base: str, runs_root: Path, shots: Path) -> None:
    from selenium.webdriver.support.ui import Select  # optional test dependency, like the browser fixture

    formats = [f for f in export_formats("lora") if f in ("hf", "gguf")]
    if "ollama" in export_formats("lora"):  # the Ollama model name: a field of the ollama format only
        name = browser.find_element("css selector", "#export-form input[name=name]")
        assert not name.is_enabled()
        Select(browser.find_element("css selector", "#export-form select[name=format]")).select_by_visible_text("ollama")
        assert name.is_enabled()
    for fmt in formats:
        Select(browser.find_element("css selector", "#export-form select[name=format]")).select_by_visible_text(fmt)
        if fmt == "gguf":
            Select(browser.find_element("css selector", "#export-form select[name=dtype]")).select_by_visible_text(
                "float32")
        browser.find_element("css selector", "#export-form button").click()
        wait_for(lambda fmt=fmt: fmt in exports_shown(browser), 300, f"the {fmt} export on the run page")
    rows = exports_shown(browser)
    assert set(rows) == set(formats), rows
    assert "max_abs_logit_diff" in rows["hf"] and "top1_agreement 1" in rows["hf"], rows["hf"]
    if "gguf" in rows:
        assert "max_abs_logit_diff" in rows["gguf"], rows["gguf"]
    assert (runs_root / "reservoirs-lora" / "export" / "hf" / "model.safetensors").is_file()
    assert "failed" not in text(browser, "#jobs")
    browser.execute_script("window.scrollTo(0, 0)")
    browser.set_window_size(1280, 1900)  # the charts, the comparison and the exports in one picture
    browser.save_screenshot(str(shots / "3-run-compared-exported.png"))
    browser.set_window_size(1280, 1000)


def chat(browser, shots: Path) -> None:
    browser.find_element("link text", "Chat with this run").click()
    browser.find_element("id", "message").send_keys("Reservoir R3 was completed in which year?")
    fill(browser, {"max_tokens": "12"})
    browser.find_element("id", "side").click()
    browser.find_element("css selector", "#chat-form button").click()
    wait_for(lambda: browser.find_element("id", "chat-form").get_attribute("data-turns") == "2", 180,
             "the streamed answer")
    for column in ("tuned", "base"):
        turns = browser.find_elements("css selector", f"#chat-{column} .turn.assistant")
        assert len(turns) == 1 and "error" not in turns[0].get_attribute("class"), column
        assert turns[0].get_attribute("data-done"), column
        assert int(turns[0].get_attribute("data-pieces")) > 1, column  # assembled from the streamed pieces
    assert text(browser, "#chat-state") == ""
    browser.save_screenshot(str(shots / "4-chat.png"))


@pytest.mark.slow
def test_a_whole_fine_tune_from_the_browser(browser, dashboard: str, runs_root: Path, tmp_path: Path, shots: Path,
                                            tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    shutil.rmtree(runs_root / "sweep")  # only the run made here, and alpha
    data = write_data(tmp_path / "reservoirs.jsonl", flawed=True)
    prepare_data(browser, dashboard, data, shots)
    train(browser, dashboard, runs_root, shots)
    compare(browser, dashboard, shots)
    export(browser, dashboard, runs_root, shots)
    chat(browser, shots)
