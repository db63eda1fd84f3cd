// dsft ui: live charts (SVG, drawn here; no library, no network) and the page actions.
"use strict";
const POST_HEADERS = {"Content-Type": "application/json", "X-Dsft-Ui": "1"};
const COLORS = ["#1d5fbf", "#d4572a", "#1b7f3b", "#7a4cc2"];
const GROUPS = [["loss", ["loss", "eval_loss"]], ["lr", ["lr"]], ["grad_norm", ["grad_norm"]],
                ["tokens_per_s", ["tokens_per_s"]]];
const SVG = "http://www.w3.org/2000/svg";

function postJson(url, body) {
  return fetch(url, {method: "POST", headers: POST_HEADERS, body: JSON.stringify(body || {})})
    .then(r => r.json().then(data => ({ok: r.ok, data})));
}

// The first number field the browser holds as wrong, as one message naming the field (its label), or null.
// Chromium drops letters typed into a number field (its value is then ""), so an empty required one is refused
// here rather than sent as "" (which the server would read as "not given"); the forms are novalidate so that
// this message, in the form's own message line, says what is wrong instead of a browser bubble naming nothing.
function fieldProblem(form) {
  for (const el of form.elements) {
    if (el.type !== "number" || el.disabled || el.validity.valid) continue;
    const label = el.labels.length ? el.labels[0].childNodes[0].textContent.trim() : el.name;
    const v = el.validity, whole = !el.step || el.step === "1";
    const rule = whole ? "a whole number" : "a number";
    if (v.valueMissing || v.badInput) return `${label}: ${rule} is needed` + (el.min ? ` (at least ${el.min})` : "");
    if (v.rangeUnderflow) return `${label}: must be at least ${el.min}, got ${el.value}`;
    if (v.rangeOverflow) return `${label}: must be at most ${el.max}, got ${el.value}`;
    if (v.stepMismatch) return `${label}: ${rule}, got ${el.value}`;
    return `${label}: ${el.validationMessage}`;
  }
  return null;
}

function fmt(v) { return Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(2) : (+v.toFixed(4)).toString(); }

function LiveCharts(holder) {
  const charts = {};
  function chart(title, columns) {
    if (charts[title]) return charts[title];
    const fig = document.createElement("figure");
    fig.className = "chart"; fig.id = "chart-" + title; fig.dataset.points = "0";
    fig.innerHTML = "<figcaption></figcaption><svg viewBox='0 0 360 160' preserveAspectRatio='none'></svg><div class='legend'></div>";
    fig.querySelector("figcaption").textContent = title;
    holder.appendChild(fig);
    charts[title] = {fig, series: Object.fromEntries(columns.map(c => [c, []])), dirty: true};
    return charts[title];
  }
  function groups(row) {
    const found = GROUPS.slice();
    for (const key of Object.keys(row)) if (/^gpu\d+_/.test(key)) found.push([key, [key]]);
    return found;
  }
  function add(rows) {
    for (const row of rows) for (const [title, columns] of groups(row)) for (const col of columns) {
      const v = row[col];
      if (typeof v !== "number" || !isFinite(v)) continue;
      const c = chart(title, columns);
      c.series[col].push([row.step, v]); c.dirty = true;
    }
    requestAnimationFrame(draw);
  }
  function draw() {
    for (const c of Object.values(charts)) {
      if (!c.dirty) continue;
      c.dirty = false;
      const all = Object.values(c.series).flat();
      if (!all.length) continue;
      const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
      let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
      if (x1 === x0) x1 = x0 + 1;
      if (y1 === y0) { y1 += Math.abs(y0) * 0.05 || 1; y0 -= Math.abs(y0) * 0.05 || 1; }
      const W = 360, H = 160, P = 46;
      const sx = x => P + (x - x0) / (x1 - x0) * (W - P - 6), sy = y => H - 16 - (y - y0) / (y1 - y0) * (H - 26);
      const svg = c.fig.querySelector("svg");
      svg.replaceChildren();
      const axis = document.createElementNS(SVG, "path");
      axis.setAttribute("d", `M${P},6 V${H - 16} H${W}`); axis.setAttribute("stroke", "#aab2bd"); axis.setAttribute("fill", "none");
      svg.appendChild(axis);
      for (const [text, x, y] of [[fmt(y1), 2, 12], [fmt(y0), 2, H - 18], [String(x0), P, H - 3], [String(x1), W - 30, H - 3]]) {
        const t = document.createElementNS(SVG, "text");
        t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "10"); t.setAttribute("fill", "#66717d");
        t.textContent = text; svg.appendChild(t);
      }
      const legend = [];
      Object.entries(c.series).forEach(([col, points], i) => {
        if (!points.length) return;
        const line = document.createElementNS(SVG, "polyline");
        line.setAttribute("points", points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "));
        line.setAttribute("fill", "none"); line.setAttribute("stroke", COLORS[i % COLORS.length]); line.setAttribute("stroke-width", "1.8");
        line.dataset.column = col;
        svg.appendChild(line);
        if (points.length === 1) {
          const dot = document.createElementNS(SVG, "circle");
          dot.setAttribute("cx", sx(points[0][0])); dot.setAttribute("cy", sy(points[0][1])); dot.setAttribute("r", "2.5");
          dot.setAttribute("fill", COLORS[i % COLORS.length]); svg.appendChild(dot);
        }
        legend.push(`<span style="color:${COLORS[i % COLORS.length]}">${col} ${fmt(points[points.length - 1][1])}</span>`);
      });
      c.fig.querySelector(".legend").innerHTML = legend.join("");
      c.fig.dataset.points = String(all.length);
    }
  }
  return {add};
}

function watchRun(holder) {
  const charts = LiveCharts(holder);
  const source = new EventSource("/api/run/events?run=" + encodeURIComponent(holder.dataset.run));
  source.addEventListener("rows", e => charts.add(JSON.parse(e.data)));
  source.addEventListener("status", e => {
    const cell = document.getElementById("status");
    if (cell) { cell.textContent = JSON.parse(e.data); cell.className = "status " + cell.textContent.replace(/ /g, "-"); }
  });
  source.addEventListener("best", e => {  // the best evaluation so far, as the runs table shows it
    const cell = document.querySelector(".facts [data-col=best_metric]");
    if (cell) cell.textContent = best(JSON.parse(e.data));
  });
  source.addEventListener("done", () => { source.close(); holder.dataset.done = "1"; });
  const stop = document.getElementById("stop");
  if (stop) stop.addEventListener("click", () => {
    stop.disabled = true;
    postJson("/api/run/stop?run=" + encodeURIComponent(holder.dataset.run)).then(r => { stop.textContent = r.ok ? "stopping…" : r.data.error; });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const holder = document.getElementById("charts");
  if (holder) watchRun(holder);
  if (window.dsftPage) window.dsftPage();
});

function maskForm(form) {
  form.addEventListener("submit", e => {
    e.preventDefault();
    const body = Object.fromEntries(new FormData(form).entries());
    const out = document.getElementById("mask"), counts = document.getElementById("mask-counts");
    const problem = fieldProblem(form);
    if (problem) { counts.textContent = problem; counts.className = "error"; return; }
    counts.className = "hint"; counts.textContent = "rendering…"; out.replaceChildren();
    postJson("/api/mask", body).then(r => {
      if (!r.ok) { counts.textContent = r.data.error; counts.className = "error"; return; }
      counts.className = "hint";
      const c = r.data.counts;
      counts.textContent = `template ${r.data.template} · masking ${r.data.masking} · ${c.tokens} tokens: ` +
        `${c.supervised} supervised, ${c.unsupervised} context`;
      for (const t of r.data.tokens) {
        const span = document.createElement("span");
        span.className = "tok " + (t.supervised ? "sup" : "ctx") + (t.special ? " special" : "");
        span.textContent = t.text;
        span.title = (t.supervised ? "supervised" : "context") + (t.special ? ", special token" : "");
        out.appendChild(span);
      }
      out.dataset.rendered = "1";
    });
  });
  if (form.source.value) form.requestSubmit();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("mask-form");
  if (form) maskForm(form);
});

function chatForm(form) {
  const history = [];
  const state = document.getElementById("chat-state"), send = form.querySelector("button[type=submit]");
  function turn(where, role, text) {
    const log = document.getElementById("chat-" + where);
    const div = document.createElement("div");
    div.className = "turn " + role;
    if (role === "user") { div.innerHTML = "<strong>you</strong> "; div.append(text); }
    else { div.innerHTML = "<div class='reasoning' hidden></div><div class='answer'></div>"; }
    log.appendChild(div);
    return div;
  }
  function apply(div, event) {
    if (event.error) { div.className += " error"; div.textContent = event.error; return; }
    if (event.reasoning || event.content) div.dataset.pieces = String(+(div.dataset.pieces || 0) + 1);
    if (event.reasoning) { const r = div.querySelector(".reasoning"); r.hidden = false; r.textContent += event.reasoning; }
    if (event.content) div.querySelector(".answer").textContent += event.content;
    if (event.done) div.dataset.done = event.finish_reason || "stop";
  }
  // Server-sent events from a POST: read the body as it arrives, one `data: JSON` block at a time.
  async function stream(body, onEvent) {
    const response = await fetch("/api/chat/stream", {method: "POST", headers: POST_HEADERS, body: JSON.stringify(body)});
    if (!response.ok) { const data = await response.json(); throw new Error(data.error); }
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        if (block.startsWith("data: ")) onEvent(JSON.parse(block.slice(6)));
      }
    }
  }
  form.addEventListener("submit", e => {
    e.preventDefault();
    // One reply at a time: a second Send while one streams put two questions before their answers in the history.
    if (form.dataset.streaming === "1") return;
    const text = form.message.value.trim();
    const problem = fieldProblem(form) || (text ? null : "message: empty; type a message");
    if (problem) { state.textContent = problem; state.className = "error"; return; }
    const side = form.side_by_side.checked;
    document.getElementById("base-column").style.display = side ? "" : "none";
    history.push({role: "user", content: text});
    turn("tuned", "user", text); if (side) turn("base", "user", text);
    const answers = {tuned: turn("tuned", "assistant")};
    if (side) answers.base = turn("base", "assistant");
    form.message.value = ""; state.className = "hint";
    state.textContent = "generating… (the first message loads the model)";
    form.dataset.streaming = "1"; send.disabled = true;
    const body = {run: form.dataset.run, checkpoint: form.checkpoint.value, messages: history,
                  max_tokens: +form.max_tokens.value, temperature: +form.temperature.value, side_by_side: side};
    stream(body, event => { state.textContent = "generating…"; apply(answers[event.side], event); })
      .then(() => {
        state.textContent = "";
        const tuned = answers.tuned;
        if (!tuned.className.includes("error")) history.push({role: "assistant", content: tuned.querySelector(".answer").textContent});
      })
      .catch(err => {
        state.textContent = err.message; state.className = "error"; history.pop();
        for (const div of Object.values(answers)) div.remove();
      })
      .finally(() => { form.dataset.streaming = ""; send.disabled = false; form.dataset.turns = String(history.length); });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("chat-form");
  if (form) chatForm(form);
});

function newRunForm(form) {
  form.addEventListener("submit", e => {
    e.preventDefault();
    const error = document.getElementById("new-error");
    const problem = fieldProblem(form);  // a number field the browser holds as wrong: said, nothing sent
    error.textContent = problem || "checking…";
    if (problem) return;
    const button = form.querySelector("button[type=submit]"); button.disabled = true;  // one run per click
    postJson("/api/runs", Object.fromEntries(new FormData(form).entries())).then(r => {
      if (!r.ok) {
        error.textContent = r.data.error + (r.data.problems ? ": " + r.data.problems.join("; ") : "");
        button.disabled = false; return;
      }
      window.location = r.data.url;
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("new-form");
  if (form) newRunForm(form);
});

function best(metric) {
  if (!metric) return "–";
  return Object.entries(metric).map(([k, v]) => k + " " + (Number.isInteger(v) ? v : +v.toPrecision(4))).join(", ");
}

// The runs page follows the runs: status, steps and best metric every 2 s; a new or removed run reloads it.
function liveRuns(holder) {
  setInterval(() => fetch("/api/runs").then(r => r.json()).then(list => {
    const rows = [...document.querySelectorAll("#runs tr[data-run]")];
    if (list.map(r => r.name).join("\n") !== rows.map(r => r.dataset.run).join("\n")) { location.reload(); return; }
    list.forEach((run, i) => {
      const cell = col => rows[i].querySelector(`[data-col=${col}]`);
      cell("status").textContent = run.status; cell("status").className = "status " + run.status.replace(/ /g, "-");
      cell("steps").textContent = (run.step || 0) + (run.max_steps ? " / " + run.max_steps : "");
      cell("best_metric").textContent = best(run.best_metric);
    });
    holder.dataset.refreshed = String(+(holder.dataset.refreshed || 0) + 1);
  }), 2000);
}

function formFields(form) {
  const fields = Object.fromEntries(new FormData(form).entries());
  for (const box of form.querySelectorAll("input[type=checkbox][name]")) fields[box.name] = box.checked ? "on" : "off";
  return fields;
}

// A page that shows jobs reloads itself when one of them ends (its outputs are then on the page).
function reloadWhenJobsEnd(url, running) {
  const timer = setInterval(() => fetch(url).then(r => r.json()).then(data => {
    if (!running(data)) { clearInterval(timer); location.reload(); }
  }), 1500);
}

function jobForms() {
  for (const [id, url] of [["compare-form", "/api/compare"], ["export-form", "/api/export"]]) {
    const form = document.getElementById(id);
    if (!form) continue;
    // Each form's message right under it: under the jobs list it could be a screen away from the button pressed.
    const error = document.getElementById(id.replace("-form", "-error"));
    form.addEventListener("submit", e => {
      e.preventDefault();
      const problem = fieldProblem(form);  // a number field the browser holds as wrong: said, nothing sent
      error.textContent = problem || "starting…";
      if (problem) return;
      const button = form.querySelector("button"); button.disabled = true;  // one job per click
      postJson(url, {run: form.dataset.run, ...formFields(form)}).then(r => {
        if (!r.ok) { error.textContent = r.data.error; button.disabled = false; return; }
        location.reload();
      });
    });
  }
  // The Ollama model name applies to the ollama format only: the field is off (and not sent) for the others.
  const exportForm = document.getElementById("export-form");
  if (exportForm && exportForm.elements.name) {
    const toggle = () => { exportForm.elements.name.disabled = exportForm.elements.format.value !== "ollama"; };
    exportForm.elements.format.addEventListener("change", toggle);
    toggle();
  }
  // A running job's Stop: SIGTERM to its process group; the page then shows it stopped.
  for (const button of document.querySelectorAll("button.stop-job")) button.addEventListener("click", () => {
    button.disabled = true; button.textContent = "stopping…";
    postJson("/api/job/stop?id=" + encodeURIComponent(button.dataset.job)).then(r => {
      if (r.ok || r.data.error.includes("already")) { location.reload(); return; }
      button.textContent = r.data.error;
    });
  });
  const holder = document.getElementById("jobs-holder");
  if (holder && +holder.dataset.running > 0)
    reloadWhenJobsEnd("/api/jobs?target=" + encodeURIComponent(holder.dataset.target),
                      list => list.some(j => j.status === "running"));
}

function prepareForms() {
  const upload = document.getElementById("upload-form"), prepare = document.getElementById("prepare-form");
  if (upload) upload.addEventListener("submit", e => {
    e.preventDefault();
    const file = document.getElementById("upload").files[0], state = document.getElementById("upload-state");
    if (!file) { state.className = "error"; state.textContent = "upload a data file: none chosen; choose one first"; return; }
    state.className = "hint"; state.textContent = "uploading…";
    const button = upload.querySelector("button"); button.disabled = true;  // one upload per click
    fetch("/api/data/upload?name=" + encodeURIComponent(file.name), {method: "POST", headers: {"X-Dsft-Ui": "1"}, body: file})
      .then(r => r.json().then(data => ({ok: r.ok, data}))).then(r => {
        button.disabled = false;
        if (!r.ok) { state.className = "error"; state.textContent = r.data.error; return; }
        state.textContent = `uploaded ${r.data.path} (${r.data.bytes} bytes)`;
        const files = prepare.files;
        files.value = files.value ? files.value + "," + r.data.path : r.data.path;
      });
  });
  if (prepare) prepare.addEventListener("submit", e => {
    e.preventDefault();
    const error = document.getElementById("prepare-error");
    error.textContent = "checking…";
    const button = prepare.querySelector("button[type=submit]"); button.disabled = true;  // one job per click
    postJson("/api/prepare", formFields(prepare)).then(r => {
      if (!r.ok) { error.textContent = r.data.error; button.disabled = false; return; }
      window.location = r.data.url;
    });
  });
  const prepared = document.getElementById("prepared");
  if (prepared && prepared.dataset.running === "1")
    reloadWhenJobsEnd("/api/prepared?name=" + encodeURIComponent(prepared.dataset.name),
                      view => view.job && view.job.status === "running");
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("#runs[data-live], #runs-empty[data-live]");
  if (live) liveRuns(live);
  jobForms();
  prepareForms();
});
