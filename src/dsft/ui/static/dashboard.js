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
    counts.textContent = "rendering…"; out.replaceChildren();
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
  const state = document.getElementById("chat-state");
  function show(where, role, answer) {
    const log = document.getElementById("chat-" + where);
    const turn = document.createElement("div");
    turn.className = "turn " + role;
    if (role === "user") { turn.innerHTML = "<strong>you</strong> "; turn.append(answer); log.appendChild(turn); return; }
    if (answer.error) { turn.className += " error"; turn.textContent = answer.error; log.appendChild(turn); return; }
    if (answer.reasoning) {
      const r = document.createElement("div"); r.className = "reasoning"; r.textContent = answer.reasoning; turn.appendChild(r);
    }
    const a = document.createElement("div"); a.className = "answer"; a.textContent = answer.content; turn.appendChild(a);
    log.appendChild(turn);
  }
  form.addEventListener("submit", e => {
    e.preventDefault();
    const text = form.message.value.trim();
    if (!text) return;
    const side = form.side_by_side.checked;
    document.getElementById("base-column").style.display = side ? "" : "none";
    history.push({role: "user", content: text});
    show("tuned", "user", text); if (side) show("base", "user", text);
    form.message.value = ""; state.textContent = "generating… (the first message loads the model)";
    postJson("/api/chat", {run: form.dataset.run, checkpoint: form.checkpoint.value, messages: history,
                           max_tokens: +form.max_tokens.value, temperature: +form.temperature.value, side_by_side: side})
      .then(r => {
        if (!r.ok) { state.textContent = r.data.error; state.className = "error"; history.pop(); return; }
        state.textContent = ""; state.className = "hint";
        show("tuned", "assistant", r.data.tuned);
        if (r.data.base) show("base", "assistant", r.data.base);
        if (!r.data.tuned.error) history.push({role: "assistant", content: r.data.tuned.content});
        form.dataset.turns = String(history.length);
      });
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
    error.textContent = "checking…";
    postJson("/api/runs", Object.fromEntries(new FormData(form).entries())).then(r => {
      if (!r.ok) { error.textContent = r.data.error + (r.data.problems ? ": " + r.data.problems.join("; ") : ""); return; }
      window.location = r.data.url;
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("new-form");
  if (form) newRunForm(form);
});
