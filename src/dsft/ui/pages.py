"""Server-rendered HTML for the dashboard's pages (escaped with :func:`html.escape`, no template engine)."""

from __future__ import annotations

import json
import shlex
from html import escape
from xml.sax.saxutils import quoteattr
from typing import Any
from urllib.parse import quote

from dsft.ui.runs import RunSummary

NAV = (("/", "Runs"), ("/prepare", "Prepare data"), ("/data", "Data"), ("/new", "New run"))


def page(title: str, body: str, script: bool = True) -> str:
    nav = " ".join(f'<a href="{href}">{label}</a>' for href, label in NAV)
    tail = '<script src="/static/dashboard.js"></script>' if script else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · dsft</title>'
            f'<link rel="stylesheet" href="/static/style.css"></head><body><header><strong>dsft</strong> {nav}'
            f'</header><main><h1>{escape(title)}</h1>{body}</main>{tail}</body></html>')


def _cell(value: Any, col: str = "") -> str:
    attr = f' data-col="{col}"' if col else ""
    if value is None or value == "":
        return f"<td{attr}>–</td>"
    if isinstance(value, dict):
        value = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return f"<td{attr}>{escape(str(value))}</td>"


def run_link(name: str) -> str:
    return f"/run/{quote(name)}"


def runs_page(runs: list[RunSummary], root: str) -> str:
    if not runs:
        body = (f"<p id='runs-empty' data-live='1'>No runs under <code>{escape(root)}</code> yet. "
                "<a href='/prepare'>Prepare data</a>, then <a href='/new'>start one</a>.</p>")
        return page("Runs", body)
    rows = []
    for r in runs:
        steps = f"{r.step or 0}" + (f" / {r.max_steps}" if r.max_steps else "")
        rows.append(
            f'<tr data-run="{escape(r.name)}"><td><a href="{run_link(r.name)}">{escape(r.name)}</a></td>'
            f'<td class="status {escape(r.status.replace(" ", "-"))}" data-col="status"'
            f'{f" title={quoteattr(r.unusable)}" if r.unusable else ""}>{escape(r.status)}</td>'
            f"{_cell(r.method)}{_cell(r.objective)}{_cell(r.model)}{_cell(steps, 'steps')}"
            f"{_cell(r.best_metric, 'best_metric')}{_cell(r.started)}</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "status", "method", "objective", "model", "steps",
                                             "best metric", "started"))
    return page("Runs", f'<p>Runs under <code>{escape(root)}</code> <span class="hint">(refreshed every few '
                        f'seconds)</span></p><table id="runs" data-live="1"><tr>{head}</tr>{"".join(rows)}</table>')


def data_report_html(report: dict[str, Any] | None, listed: dict[str, list[str]], unfolded: bool = False) -> str:
    """The accounting table, then the first rejected / removed records per file (``unfolded``: shown open)."""
    if not report:
        return "<p>No data report (the run has not prepared its data yet).</p>"
    rows = [("read", report.get("read")), ("rejected", report.get("rejected"))]
    rows += [(f"added: {k}", v) for k, v in (report.get("added") or {}).items()]
    rows += [(f"removed: {k}", v) for k, v in (report.get("removed") or {}).items()]
    rows += [("kept", report.get("kept"))]
    rows += [(f"split: {k}", v) for k, v in (report.get("splits") or {}).items()]
    table = "".join(f"<tr><td>{escape(str(k))}</td>{_cell(v)}</tr>" for k, v in rows)
    details = "".join(
        f"<details{' open' if unfolded else ''} data-file='{escape(name)}'><summary>{escape(name)} (first "
        f"{len(lines)})</summary><pre>{escape(chr(10).join(lines))}</pre></details>" for name, lines in listed.items()
        if lines)
    return f'<table id="data-report">{table}</table>{details}'


def run_page(summary: RunSummary, config: str, report: dict[str, Any] | None, listed: dict[str, list[str]],
             checkpoints: list[str], reports: list[str], exports: list[dict[str, Any]], can_stop: bool,
             log: str = "", sections: dict[str, str] | None = None, ollama_installed: bool = True,
             stop_requested: str = "") -> str:
    """The run's page; ``sections`` (``compare``, ``export``, ``jobs``: HTML from :mod:`dsft.ui.job_pages`)
    are placed under their headings; ``ollama_installed``: whether this machine has the ``ollama`` command;
    ``stop_requested``: when Stop was asked for (the button then only says so)."""
    sections = sections or {}
    name = summary.name
    facts = "".join(f"<tr><th>{k}</th>{_cell(v, 'best_metric' if k == 'best metric' else '')}</tr>" for k, v in (
        ("status", None), ("model", summary.model), ("method", summary.method), ("objective", summary.objective),
        ("template", summary.template), ("best metric", summary.best_metric), ("started", summary.started)))
    facts = facts.replace("<th>status</th><td>–</td>",
                          f'<th>status</th><td id="status" class="status">{escape(summary.status)}</td>')
    actions = []
    if summary.unusable:  # listed, but no command opens it: neither it nor its checkpoints (if any) offer a chat
        actions.append(f'<p id="unusable" class="hint">{escape(summary.unusable)}</p>')
    elif summary.has_final or checkpoints:
        actions.append(f'<a class="button" href="/chat/{quote(name)}">Chat with this run</a>')
    if can_stop and stop_requested:  # a second SIGTERM would stop training at once: not offered again
        actions.append(f'<button id="stop" type="button" disabled>stopping after the current step (asked '
                       f'{escape(stop_requested)})</button>')
    elif can_stop:
        actions.append('<button id="stop" type="button">Stop (graceful)</button>')
    chat = "" if summary.unusable else " <a href='/chat/{run}?checkpoint={checkpoint}'>chat</a>"
    ckpts = "".join(f"<li>{escape(c)}{chat.format(run=quote(name), checkpoint=quote(c))}</li>"
                    for c in checkpoints) or "<li>none yet</li>"
    links = "".join(f'<li><a href="/file?path={quote(p)}">{escape(p)}</a></li>' for p in reports) or "<li>none</li>"
    export_rows = "".join(
        f"<tr><td>{escape(e.get('path', ''))}</td><td>{escape(str(e.get('format', '')))}</td>"
        f"<td>{escape(str(e.get('dtype', '')))}</td><td class='verification'>{_verification(e.get('verification'))}"
        "</td></tr>" for e in exports)
    exports_html = (f"<table id='exports'><tr><th>file</th><th>format</th><th>dtype</th><th>verification "
                    f"(reloaded export vs trained model)</th></tr>{export_rows}</table>") if exports else \
        "<p class='hint'>No exports yet.</p>"
    exports_html += "".join(_ollama_html(e, ollama_installed) for e in exports if isinstance(e.get("ollama"), dict))
    body = (f'<div class="actions">{" ".join(actions)}</div><table class="facts">{facts}</table>'
            f'<h2>Metrics</h2><p class="hint">live: new rows of metrics.jsonl arrive as the run writes them</p>'
            f'<div id="charts" data-run="{escape(name)}"></div>{sections.get("compare", "")}'
            f"<h2>Exports</h2>{sections.get('export', '')}{exports_html}{sections.get('jobs', '')}"
            f"<h2>Data</h2>{data_report_html(report, listed)}"
            f"<h2>Checkpoints</h2><ul id='checkpoints'>{ckpts}</ul>"
            f"<h2>Reports</h2><ul id='reports'>{links}</ul>"
            f"<h2>Resolved config</h2><pre id='config'>{escape(config)}</pre>"
            + (f"<h2>Log (last lines)</h2><pre id='log'>{escape(log)}</pre>" if log else ""))
    return page(name, body)


def _ollama_html(export: dict[str, Any], installed: bool) -> str:
    """An Ollama export: its model name, the commands that register and run it, and its Modelfile."""
    ollama = export["ollama"]
    name, where = str(ollama.get("name", "")), str(export.get("dir", ""))
    missing = "" if installed else (" <span class='hint'>(the <code>ollama</code> command is not installed on this "
                                    "machine: run them where it is, with this directory)</span>")
    return (f"<div class='ollama' data-export='{escape(export.get('path', ''))}'><h3>Ollama model "
            f"<code>{escape(name)}</code></h3><p>Register and run it{missing}:</p>"
            f"<pre class='ollama-commands'>cd {escape(shlex.quote(where))}\n{escape(str(ollama.get('create', '')))}\n"
            f"ollama run {escape(name)}</pre><details><summary>{escape(str(ollama.get('modelfile', '')))}</summary>"
            f"<pre class='modelfile'>{escape(export.get('modelfile_text', ''))}</pre></details></div>")


def _verification(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "not verified"
    return " · ".join(f"{escape(k)} {v:.4g}" if isinstance(v, float) else f"{escape(k)} {escape(json.dumps(v))}"
                      for k, v in figures.items())


def login_page(next_path: str, wrong: bool) -> str:
    message = "<p class='error'>Wrong key.</p>" if wrong else ""
    body = (f"{message}<form method='post' action='/login'><input type='hidden' name='next' "
            f"value='{escape(next_path)}'><label>API key <input type='password' name='key' autofocus></label> "
            "<button type='submit'>Sign in</button></form>")
    return page("Sign in", body, script=False)


def error_page(status: int, message: str) -> str:
    return page(f"Error {status}", f"<p class='error'>{escape(message)}</p>", script=False)


def options_html(values: list[str], selected: str = "") -> str:
    return "".join(f"<option{' selected' if v == selected else ''}>{escape(v)}</option>" for v in values)


def data_page(sources: list[str], templates: list[str], source: str) -> str:
    choices = "".join(f"<option value='{escape(s)}'>" for s in sources)
    body = (
        "<p>One conversation rendered with the chat template, token by token: <span class='mask'><span class='tok sup'>"
        "supervised</span> <span class='tok ctx'>context</span> <span class='tok special'>special</span></span>. "
        "A run renders with its own model, template and masking.</p>"
        "<form id='mask-form' novalidate class='grid'>"
        f"<label for='source'>run, prepared dir or file</label><input id='source' name='source' list='sources' "
        f"value='{escape(source)}' required><datalist id='sources'>{choices}</datalist>"
        "<label for='index'>record</label><input id='index' name='index' type='number' required min='0' value='0'>"
        f"<label for='template'>template</label><select id='template' name='template'><option value=''>"
        f"as prepared / config</option>{options_html(templates)}</select>"
        "<label for='tokenizer'>tokenizer</label><input id='tokenizer' name='tokenizer' "
        "placeholder=\"the run's model; or deepseek, a tiny preset, a model dir under the root\">"
        "<label for='masking'>masking</label><select id='masking' name='masking'><option value=''>as configured"
        "</option><option>assistant</option><option>last</option><option>all</option></select>"
        "<span></span><button type='submit'>Render</button></form>"
        "<p id='mask-counts' class='hint'></p><div id='mask' class='mask'></div>")
    return page("Data: the loss mask", body)


def chat_page(summary: RunSummary, checkpoints: list[str], chosen: str, max_tokens: int) -> str:
    """``max_tokens``: the most a reply may ask for (the run's ``serve.max_tokens``, as ``dsft serve RUN`` allows)."""
    weights = ([("", "final")] if summary.has_final else []) + [(c, c) for c in checkpoints]
    options = "".join(f"<option value='{escape(v)}'{' selected' if v == chosen else ''}>{escape(label)}</option>"
                      for v, label in weights)
    body = (
        f"<p>Run <a href='{run_link(summary.name)}'>{escape(summary.name)}</a> · template "
        f"{escape(str(summary.template))} · answers come from the same engine as <code>dsft serve</code>; "
        "reasoning is shown apart from the answer.</p>"
        f"<form id='chat-form' novalidate class='grid' data-run='{escape(summary.name)}'>"
        f"<label for='weights'>weights</label><select id='weights' name='checkpoint'>{options}</select>"
        "<label for='max_tokens'>max tokens</label><input id='max_tokens' name='max_tokens' type='number' required "
        f"min='1' max='{max_tokens}' value='{min(128, max_tokens)}'><label for='temperature'>temperature</label><input id='temperature' name='temperature' "
        "type='number' required min='0' max='2' step='any' value='0'>"
        "<label for='side'>base side by side</label><input id='side' name='side_by_side' type='checkbox'>"
        "<label for='message'>message</label><textarea id='message' name='message' rows='3' required></textarea>"
        "<span></span><button type='submit'>Send</button></form>"
        "<p id='chat-state' class='hint'></p><div id='chat-columns' style='display:flex; gap:1em'>"
        "<div style='flex:1'><h2>tuned</h2><div id='chat-tuned' class='chat-log'></div></div>"
        "<div style='flex:1; display:none' id='base-column'><h2>base</h2><div id='chat-base' class='chat-log'>"
        "</div></div></div>")
    return page(f"Chat: {summary.name}", body)


def new_page(model_choices: list[str], sources: list[str], templates: list[str], data: str = "") -> str:
    files = "".join(f"<option value='{escape(s)}'>" for s in sources)
    models = "".join(f"<option value='{escape(p)}'>" for p in model_choices)
    body = (
        "<p>Checked by the same config loading and machine checks as <code>dsft train</code> before anything "
        "starts; the run then trains in its own process (it keeps going if the dashboard stops).</p>"
        "<form id='new-form' novalidate class='grid'>"
        "<label for='name'>run name</label><input id='name' name='name' required placeholder='my-run'>"
        f"<label for='model'>model</label><input id='model' name='model' list='models' required "
        f"placeholder='a tiny preset, a model dir or .gguf file under the runs root, or ollama:NAME[:TAG]'>"
        f"<datalist id='models'>{models}</datalist>"
        f"<label for='data'>data</label><input id='data' name='data' list='files' required value='{escape(data)}' "
        f"placeholder='a prepared directory, or data files under the runs root, comma-separated'>"
        f"<datalist id='files'>{files}</datalist>"
        "<label for='method'>method</label><select id='method' name='method'><option>lora</option>"
        "<option>qlora</option><option>full</option></select>"
        f"<label for='template'>template</label><select id='template' name='template'>{options_html(templates)}</select>"
        "<label for='max_steps'>max steps</label><input id='max_steps' name='max_steps' type='number' required "
        "value='100'>"
        "<label for='lr'>learning rate</label><input id='lr' name='lr' value='2e-4'>"
        "<label for='max_seq_len'>max seq len</label><input id='max_seq_len' name='max_seq_len' type='number' required "
        "value='1024'><label for='micro_batch_size'>micro batch size</label><input id='micro_batch_size' "
        "name='micro_batch_size' type='number' required value='1'>"
        "<label for='lora_r'>LoRA rank</label><input id='lora_r' name='lora_r' type='number' required value='16'>"
        "<label for='val_ratio'>validation share</label><input id='val_ratio' name='val_ratio' value='0.05' "
        "title='of raw data files; a prepared directory keeps its own split'>"
        "<label for='save_steps'>save every</label><input id='save_steps' name='save_steps' type='number' required "
        "value='100'>"
        "<label for='extra'>more keys</label><textarea id='extra' name='extra' rows='3' "
        "placeholder='one key=value a line, e.g. train.warmup_ratio=0'></textarea>"
        "<span></span><button type='submit'>Start training</button></form><div id='new-error' class='error'></div>")
    return page("New run", body)
