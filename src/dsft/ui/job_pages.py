"""HTML for what the dashboard runs as jobs: the data preparation page, a prepared directory, and the run
page's compare / export sections and job list (escaped with :func:`html.escape`, like :mod:`dsft.ui.pages`)."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from dsft.export.api import EXPORT_DTYPES
from dsft.ui.jobs import Job
from dsft.ui.pages import data_report_html, options_html, page


def _datalist(list_id: str, values: list[str]) -> str:
    return f"<datalist id='{list_id}'>" + "".join(f"<option value='{escape(v)}'>" for v in values) + "</datalist>"


def stop_button(job_id: str) -> str:
    """The Stop button of a running job (``dashboard.js`` posts ``/api/job/stop``)."""
    return f"<button type='button' class='stop-job' data-job='{escape(job_id)}'>Stop</button>"


def jobs_table(jobs: list[Job]) -> str:
    """Jobs with status, output and (failed) the command's message, (running) a Stop button, (stopped) when;
    the log folded below each."""
    if not jobs:
        return "<p class='hint'>None yet.</p>"
    rows = []
    for job in jobs:
        message = f"<div class='error'>{escape(job.error)}</div>" if job.error else ""
        if job.status == "running":
            message += stop_button(job.id)
        elif job.status == "stopped":
            message += f"<div class='hint'>stopped at {escape(job.stopped or '')}</div>"
        log = f"<details><summary>log</summary><pre>{escape(job.log)}</pre></details>" if job.log else ""
        rows.append(f"<tr data-job='{escape(job.id)}' data-status='{escape(job.status)}'><td>{escape(job.kind)}</td>"
                    f"<td class='status {escape(job.status)}'>{escape(job.status)}</td><td>{escape(job.out)}</td>"
                    f"<td>{escape(job.started)}</td><td>{message}{log}</td></tr>")
    return ("<table id='jobs'><tr><th>job</th><th>status</th><th>writes</th><th>started</th><th>message</th></tr>"
            + "".join(rows) + "</table>")


def _comparisons_html(comparisons: list[dict[str, Any]]) -> str:
    if not comparisons:
        return "<p class='hint'>No comparison yet.</p>"
    parts = []
    for c in comparisons:
        rows = "".join(f"<tr><td>{escape(m)}</td><td>{escape(b)}</td><td>{escape(t)}</td><td>{escape(d)}</td></tr>"
                       for m, b, t, d in c["rows"])
        link = f" · <a href='/file?path={quote(c['report'])}'>full report</a>" if c["report"] else ""
        parts.append(f"<h3>{escape(c['dir'])}</h3><p class='hint'>{escape(str(c['count']))} prompts from "
                     f"<code>{escape(str(c['data']))}</code>{link}</p><table class='comparison'><tr><th>metric</th>"
                     f"<th>base</th><th>tuned</th><th>delta</th></tr>{rows}</table>")
    return "<div id='comparisons'>" + "".join(parts) + "</div>"


def run_sections(name: str, finished: bool, comparisons: list[dict[str, Any]], formats: list[str],
                 eval_default: str | None, sources: list[str], jobs: list[Job], ended: str = "") -> dict[str, str]:
    """The run page's compare and export forms (once the run has ``final/``), comparisons and jobs; ``ended``: the
    status of a run that has ended without ``final/`` (it never will have one unless it is resumed)."""
    running = sum(1 for j in jobs if j.status == "running")
    later = "<p class='hint'>Once the run has finished (with final/).</p>"
    if ended:
        later = (f"<p class='hint'>This run ended ({escape(ended)}) without final/: nothing to compare or export. "
                 f"Continue it from its last checkpoint in the runs root: <code>dsft train {escape(name)}/config.yaml "
                 f"--out {escape(name)} --resume auto</code></p>")
    hint = escape(eval_default or "an eval file under the root")
    compare_form = (
        f"<form id='compare-form' novalidate class='inline' data-run='{escape(name)}'>"
        f"<label>eval data <input name='data' list='eval-files' placeholder='{hint}'></label>"
        f"{_datalist('eval-files', sources)}"
        "<label>prompts <input name='limit' type='number' required min='1' value='20'></label>"
        "<label>max new tokens <input name='max_new_tokens' type='number' required min='1' value='64'></label>"
        "<button type='submit'>Compare base vs tuned</button></form><div id='compare-error' class='error'></div>")
    export_form = (
        f"<form id='export-form' novalidate class='inline' data-run='{escape(name)}'>"
        f"<label>format <select name='format'>{options_html(formats)}</select></label>"
        f"<label>dtype <select name='dtype'>{options_html(list(EXPORT_DTYPES))}</select></label>"
        "<label>verify <input name='verify' type='checkbox' checked></label>"
        + ("<label>Ollama name <input name='name' placeholder='the run name' title='for the ollama format: the "
           "model name of ollama create'></label>" if "ollama" in formats else "")
        + "<button type='submit'>Export</button></form><div id='export-error' class='error'></div>")
    return {
        "compare": f"<h2>Compare</h2>{compare_form if finished else later}{_comparisons_html(comparisons)}",
        "export": export_form if finished else later,
        "jobs": (f"<h2>Jobs</h2><div id='jobs-holder' "
                 f"data-target='{escape(name)}' data-running='{running}'>{jobs_table(jobs)}</div>"),
    }


def prepare_page(files: list[str], models: list[str], templates: list[str], formats: list[str]) -> str:
    body = (
        "<p>Runs <code>dsft data prepare</code> on files under the runs root (upload one first if it is elsewhere): "
        "the same reading, validation, cleaning, deduplication and split as in a terminal. The prepared directory "
        "is then a data choice of <a href='/new'>New run</a>.</p>"
        "<form id='upload-form' novalidate class='inline'><label>upload a data file <input id='upload' type='file' "
        "accept='.jsonl,.json,.csv,.parquet'></label><button type='submit'>Upload</button>"
        "<span id='upload-state' class='hint'></span></form>"
        "<form id='prepare-form' novalidate class='grid'>"
        "<label for='name'>output name</label><input id='name' name='name' required placeholder='prepared/my-data'>"
        "<label for='files'>data files</label><input id='files' name='files' list='files-list' required "
        f"placeholder='paths under the runs root, comma-separated'>{_datalist('files-list', files)}"
        f"<label for='format'>format</label><select id='format' name='format'>{options_html(formats)}</select>"
        f"<label for='template'>template</label><select id='template' name='template'>{options_html(templates)}"
        "</select><label for='model'>model (tokenizer)</label><input id='model' name='model' list='models' "
        "value='deepseek' placeholder='deepseek, a tiny preset, a model dir or .gguf under the root, ollama:NAME'>"
        f"{_datalist('models', ['deepseek', *models])}"
        "<label for='val_ratio'>validation share</label><input id='val_ratio' name='val_ratio' value='0.1'>"
        "<label for='test_ratio'>test share</label><input id='test_ratio' name='test_ratio' value='0'>"
        "<label for='on_error'>invalid records</label><select id='on_error' name='on_error'><option>skip</option>"
        "<option>fail</option></select>"
        "<label for='extra'>more keys</label><textarea id='extra' name='extra' rows='3' "
        "placeholder='one key=value a line, e.g. data.clean.near_dedup=true'></textarea>"
        "<span></span><button type='submit'>Prepare</button></form><div id='prepare-error' class='error'></div>")
    return page("Prepare data", body)


def prepared_page(view: dict[str, Any]) -> str:
    """A prepared directory: its job while it runs (or its failure), then the data report."""
    name, job, report = view["name"], view["job"], view["report"]
    state = ""
    if job:
        error = f"<p class='error' id='prepare-message'>{escape(job['error'])}</p>" if job["error"] else ""
        when = f", stopped at {escape(job['stopped'])}" if job["status"] == "stopped" else ""
        stop = f" {stop_button(job['id'])}" if job["status"] == "running" else ""
        state = (f"<p>Preparation <span id='prepare-status' class='status {escape(job['status'])}'>"
                 f"{escape(job['status'])}</span> (started {escape(job['started'])}{when}){stop}</p>{error}"
                 f"<details{' open' if job['status'] != 'finished' else ''}><summary>log</summary>"
                 f"<pre id='prepare-log'>{escape(job['log'])}</pre></details>")
    links = ""
    if report and (not job or job["status"] == "finished"):
        links = (f"<p class='actions'><a class='button' href='/new?data={quote(name)}'>Train on it</a> "
                 f"<a class='button' href='/data?source={quote(name)}'>See its loss mask</a> "
                 f"<a href='/file?path={quote(name + '/data_report.md')}'>data_report.md</a></p>")
    running = bool(job) and job["status"] == "running"
    body = (f"<div id='prepared' data-name='{escape(name)}' data-running='{int(running)}'>{state}{links}"
            f"<h2>Data report</h2>{data_report_html(report, view['listed'], unfolded=True) if report or not running else ''}</div>")
    return page(f"Prepared: {name}", body)
