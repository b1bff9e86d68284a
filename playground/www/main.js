// The playground's page: an editor checked as the user types (by the compiler built for
// WebAssembly, on this thread: a check takes milliseconds), the summary table and graph of
// each model, and training in a worker (worker.js) with a live curve.
import init, { check } from "./pkg/nnlang_wasm.js";

const $ = (id) => document.getElementById(id);
const source = $("source");
const backdrop = $("backdrop");
const gutter = $("gutter");
const state = { firstCheckMs: null, checkMs: null, report: null, trained: null, checks: 0, training: false };
// For tests and the curious: the last report, the first check's time, training's result.
window.playground = state;

const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function setStatus(text) {
  $("status").textContent = text;
}

// The text with the diagnostics' primary places underlined (UTF-16 offsets, as JavaScript
// strings count), overlapping places skipped.
function renderBackdrop(text, diagnostics) {
  const marks = [];
  for (const d of diagnostics) {
    if (!d.place) continue;
    marks.push({ start: d.place.start_utf16, end: d.place.end_utf16, severity: d.severity, line: d.place.line });
  }
  marks.sort((a, b) => a.start - b.start || b.end - a.end);
  let html = "";
  let at = 0;
  for (const m of marks) {
    if (m.start < at) continue;
    html += escape(text.slice(at, m.start));
    const inner = text.slice(m.start, m.end);
    const cls = m.severity + (inner.length === 0 ? " empty" : "");
    html += `<mark class="${cls}" data-line="${m.line}">${escape(inner)}</mark>`;
    at = m.end;
  }
  html += escape(text.slice(at));
  // A last empty line needs a character to keep its height.
  backdrop.innerHTML = html + "\n ";
  const lines = text.split("\n").length;
  gutter.textContent = Array.from({ length: lines }, (_, i) => i + 1).join("\n");
}

function renderDiagnostics(report) {
  const list = $("diagnostics");
  list.replaceChildren();
  const n = report.diagnostics.length;
  $("diag-count").textContent = n ? `(${n})` : "";
  if (!n) {
    const ok = document.createElement("p");
    ok.className = "none";
    ok.textContent = report.ok ? "No errors: every shape checks." : report.text;
    list.append(ok);
    return;
  }
  for (const d of report.diagnostics) {
    const item = document.createElement("div");
    item.className = `diagnostic ${d.severity}`;
    if (d.place) item.dataset.line = d.place.line;
    const pre = document.createElement("pre");
    pre.textContent = d.rendered;
    item.append(pre);
    item.addEventListener("click", () => {
      if (!d.place) return;
      source.focus();
      source.setSelectionRange(d.place.start_utf16, d.place.end_utf16);
    });
    list.append(item);
  }
}

function renderModels(report) {
  const tables = report.models.map((m) => m.table);
  if (report.recipes.length) tables.push(`${report.recipes.length} recipe block(s) checked: ${report.recipes.join(", ")}`);
  $("summary").textContent = tables.join("\n") || (report.ok ? "" : "(no model checked)");
  $("graph").innerHTML = report.models.map((m) => m.svg).join("");
}

function runCheck() {
  const started = performance.now();
  const text = source.value;
  const report = JSON.parse(check(text));
  state.checkMs = performance.now() - started;
  state.report = report;
  state.checks += 1;
  renderBackdrop(text, report.diagnostics);
  renderDiagnostics(report);
  renderModels(report);
  const errors = report.diagnostics.filter((d) => d.severity === "error").length;
  if (!state.training) {
    $("train").disabled = !report.ok || !report.recipes.some((r) => r.startsWith("train "));
    setStatus(report.ok ? "checked" : `${errors} error${errors === 1 ? "" : "s"}`);
  }
  return report;
}

let pending = null;
source.addEventListener("input", () => {
  clearTimeout(pending);
  // Underlines follow the text at once; the check follows a short pause in typing.
  renderBackdrop(source.value, []);
  pending = setTimeout(runCheck, 120);
});
source.addEventListener("scroll", () => {
  backdrop.scrollTop = source.scrollTop;
  backdrop.scrollLeft = source.scrollLeft;
  gutter.scrollTop = source.scrollTop;
});
source.addEventListener("keydown", (e) => {
  if (e.key === "Tab") {
    e.preventDefault();
    source.setRangeText("    ", source.selectionStart, source.selectionEnd, "end");
    source.dispatchEvent(new Event("input"));
  }
});

for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => showTab(tab.dataset.tab));
}
function showTab(name) {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
    $(`tab-${tab.dataset.tab}`).hidden = tab.dataset.tab !== name;
  }
}

// The training curve: each batch's loss (thin), each epoch's validation loss and accuracy.
const curve = { batches: [], epochs: [] };
function drawChart() {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, R = 48, T = 14, B = 30;
  g.clearRect(0, 0, W, H);
  g.font = "11px sans-serif";
  const total = Math.max(1, curve.epochs[0]?.epochs ?? curve.batches.at(-1)?.epoch ?? 1);
  // The scale from the epochs' losses (and most batches'): the first batches' losses, far
  // above the rest, run off the top rather than flatten everything else.
  const batchLosses = curve.batches.map((b) => b.loss).filter(Number.isFinite).sort((a, b) => a - b);
  const typical = batchLosses[Math.floor(0.9 * (batchLosses.length - 1))] ?? 0;
  const epochLosses = curve.epochs.flatMap((e) => [e.train_loss, e.val_loss ?? e.train_loss]).filter(Number.isFinite);
  const top = Math.max(1e-6, typical, ...epochLosses) * 1.15;
  const x = (epochs) => L + (W - L - R) * (epochs / total);
  const yl = (v) => T + (H - T - B) * (1 - v / top);
  const ya = (v) => T + (H - T - B) * (1 - v);
  g.strokeStyle = "#c9d1e2";
  g.strokeRect(L, T, W - L - R, H - T - B);
  g.fillStyle = "#55607a";
  g.fillText("loss", 6, T + 8);
  g.fillText(top.toFixed(2), 6, T + 20);
  g.fillText("0", L - 12, H - B);
  g.fillText("accuracy", W - R + 4, T + 8);
  g.fillText("1.0", W - R + 4, T + 20);
  g.fillText(`epoch (of ${total})`, W / 2 - 30, H - 8);
  const line = (points, color, width) => {
    if (!points.length) return;
    g.strokeStyle = color;
    g.lineWidth = width;
    g.beginPath();
    points.forEach(([px, py], i) => (i ? g.lineTo(px, py) : g.moveTo(px, py)));
    g.stroke();
  };
  g.save();
  g.beginPath();
  g.rect(L, T, W - L - R, H - T - B);
  g.clip();
  line(curve.batches.map((b) => [x(b.epoch - 1 + b.step / b.steps), yl(b.loss)]), "#9aaacb", 1);
  line(curve.epochs.filter((e) => e.val_loss != null).map((e) => [x(e.epoch), yl(e.val_loss)]), "#d12d2d", 2);
  line(curve.epochs.filter((e) => e.val_accuracy != null).map((e) => [x(e.epoch), ya(e.val_accuracy)]), "#2f7a3b", 2);
  g.restore();
  // The legend, in the middle of the plot, on a white ground.
  const legend = [["batch loss", "#9aaacb"], ["validation loss", "#d12d2d"], ["validation accuracy", "#2f7a3b"]];
  const lx = L + (W - L - R) / 2 - 60, ly = T + (H - T - B) / 2 - 24;
  g.fillStyle = "rgba(255,255,255,0.85)";
  g.fillRect(lx - 6, ly - 12, 132, 44);
  legend.forEach(([label, color], i) => {
    g.fillStyle = color;
    g.fillRect(lx, ly - 4 + 14 * i, 14, 3);
    g.fillStyle = "#1d2330";
    g.fillText(label, lx + 20, ly + 14 * i);
  });
}

function renderConfusion(matrix) {
  const table = $("confusion");
  table.replaceChildren();
  if (!matrix) return;
  const head = table.insertRow();
  head.append(Object.assign(document.createElement("th"), { textContent: "true \\ predicted" }));
  matrix.forEach((_, j) => head.append(Object.assign(document.createElement("th"), { textContent: j })));
  matrix.forEach((row, i) => {
    const tr = table.insertRow();
    tr.append(Object.assign(document.createElement("th"), { textContent: i }));
    const most = Math.max(1, ...row);
    row.forEach((n, j) => {
      const td = tr.insertCell();
      td.textContent = n;
      const shade = n / most;
      td.style.background = i === j ? `rgba(47,122,59,${0.15 + 0.6 * shade})` : n ? `rgba(209,45,45,${0.15 + 0.5 * shade})` : "";
    });
  });
}

let worker = null;
function download(id, bytes, type) {
  const a = $(id);
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([bytes], { type }));
  a.hidden = false;
}

function stopTraining(message) {
  worker?.terminate();
  worker = null;
  state.training = false;
  $("stop").disabled = true;
  $("train").disabled = !state.report?.ok;
  source.readOnly = false;
  setStatus(message);
}

$("train").addEventListener("click", () => {
  curve.batches = [];
  curve.epochs = [];
  state.trained = null;
  drawChart();
  renderConfusion(null);
  $("train-result").textContent = "";
  for (const id of ["download-weights", "download-preprocess"]) $(id).hidden = true;
  showTab("training");
  state.training = true;
  $("train").disabled = true;
  $("stop").disabled = false;
  source.readOnly = true;
  setStatus("reading the data…");
  worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
  worker.onmessage = ({ data }) => {
    if (data.kind === "start") {
      setStatus(`training ${data.parameters.toLocaleString()} parameters…`);
    } else if (data.kind === "batch") {
      curve.batches.push(data);
      drawChart();
    } else if (data.kind === "epoch") {
      curve.epochs.push(data);
      const acc = data.val_accuracy != null ? `, validation accuracy ${(100 * data.val_accuracy).toFixed(2)}%` : "";
      setStatus(`epoch ${data.epoch}/${data.epochs}: loss ${data.train_loss.toFixed(4)}${acc}`);
      drawChart();
    } else if (data.kind === "done") {
      const r = data.result;
      state.trained = r;
      const test = r.test;
      const parts = [`${r.epochs} epochs in ${r.seconds.toFixed(1)} s.`];
      if (test?.accuracy != null) parts.push(`Test accuracy ${(100 * test.accuracy).toFixed(2)}% (${test.examples} examples), loss ${test.loss.toFixed(4)}.`);
      else if (test) parts.push(`Test loss ${test.loss.toFixed(4)} (${test.examples} examples).`);
      else if (r.val_accuracy != null) parts.push(`Validation accuracy ${(100 * r.val_accuracy).toFixed(2)}%.`);
      $("train-result").textContent = parts.join(" ");
      renderConfusion(test?.confusion);
      download("download-weights", data.weights, "application/octet-stream");
      if (data.preprocess) download("download-preprocess", data.preprocess, "application/json");
      stopTraining("trained");
    } else if (data.kind === "error") {
      $("train-result").textContent = data.message;
      stopTraining("training failed");
    }
  };
  worker.onerror = (e) => stopTraining(`the worker failed: ${e.message}`);
  worker.postMessage({ source: source.value });
});
$("stop").addEventListener("click", () => stopTraining("stopped"));

async function loadExample(name) {
  const text = await (await fetch(`examples/${name}.nn`)).text();
  source.value = text;
  source.scrollTop = 0;
  runCheck();
}

async function main() {
  await init();
  const examples = await (await fetch("examples/index.json")).json();
  const select = $("examples");
  for (const name of examples.names) select.append(new Option(name, name, false, name === examples.default));
  select.addEventListener("change", () => loadExample(select.value));
  await loadExample(examples.default);
  state.firstCheckMs = performance.now();
  $("timing").textContent = state.firstCheckMs.toFixed(0);
  document.body.dataset.ready = "true";
}

main().catch((e) => setStatus(`failed to start: ${e.message ?? e}`));
