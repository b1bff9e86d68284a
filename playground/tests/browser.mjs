// The playground in a real browser: Debian's headless Chromium, driven by playwright-core,
// against playground/dist (built by playground/build.sh) served on localhost by this script.
//
//   1. the page loads and checks its first example (the time to first check is reported);
//   2. typing a shape mistake shows its diagnostic at the right line, with the arithmetic —
//      the same text `nnlangc check` prints for the same file;
//   3. fixing it clears the diagnostic and the underline;
//   4. training the digits MLP reaches ≥ 90% test accuracy within 60 s, in the worker;
//   5. the downloaded weights (with preprocess.json) evaluate with `nnlangc eval` to the same
//      accuracy and confusion matrix.
//
// Environment: NNLANGC (default target/debug/nnlangc), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOTS=dir to save the page's screenshots there (docs/images for the README).
import { chromium } from "playwright-core";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const dist = path.join(root, "playground/dist");
const nnlangc = process.env.NNLANGC ?? path.join(root, "target/debug/nnlangc");
const shots = process.env.SCREENSHOTS;

let failures = 0;
function check(ok, what, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${detail ? `: ${detail}` : ""}`);
  if (!ok) failures += 1;
}

if (!fs.existsSync(path.join(dist, "pkg/nnlang_wasm_bg.wasm"))) {
  console.error(`no ${dist}: run playground/build.sh first`);
  process.exit(2);
}

// A static file server for dist (the one thing it must get right: application/wasm).
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".nn": "text/plain; charset=utf-8",
  ".gz": "application/octet-stream",
};
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  const file = path.join(dist, decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname));
  if (!file.startsWith(dist) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end("not found");
    return;
  }
  res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((done) => server.listen(0, "127.0.0.1", done));
const url = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nnlang-playground-"));
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 960 }, acceptDownloads: true });
  const errors = [];
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));

  // 1. Load.
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  const first = await page.evaluate(() => window.playground.firstCheckMs);
  const example = await page.evaluate(() => window.playground.report);
  const checkMs = await page.evaluate(() => window.playground.checkMs);
  check(
    example.ok && example.models.length === 1,
    "the page loads and checks its first example",
    `${first.toFixed(0)} ms to first check; the check itself ${checkMs.toFixed(1)} ms`,
  );
  check(
    (await page.textContent("#summary")).includes("DigitsMlp"),
    "the summary table shows the model",
  );
  check((await page.locator("#graph svg .node").count()) >= 5, "the graph is drawn");

  // 2. Type a shape mistake.
  const mistake = [
    "model Net {",
    "    input image: [28, 28, 1]",
    "    image -> conv(filters = 8, size = 5, stride = 2) -> relu",
    "          -> flatten -> dense(10) -> softmax",
    "}",
    "",
  ].join("\n");
  await page.fill("#source", "");
  await page.focus("#source");
  await page.keyboard.type(mistake);
  await page.waitForFunction(() => window.playground.report && !window.playground.report.ok, null, { timeout: 10_000 });
  const report = await page.evaluate(() => window.playground.report);
  const shown = await page.locator("#diagnostics .diagnostic pre").allTextContents();
  const typedMs = await page.evaluate(() => window.playground.checkMs);
  check(
    shown.length === 1 && shown[0].includes("(28 − 5)/2 + 1 = 12.5"),
    "typing a shape mistake shows its arithmetic",
    `${shown[0]?.split("\n")[0]} (checked in ${typedMs.toFixed(1)} ms)`,
  );
  const marks = await page.locator("#backdrop mark").evaluateAll((ms) => ms.map((m) => [m.dataset.line, m.textContent]));
  check(marks.length === 1 && marks[0][0] === "3", "the mistake is underlined at its line (3)", JSON.stringify(marks));
  check(
    (await page.getAttribute("#diagnostics .diagnostic", "data-line")) === "3",
    "the listed diagnostic names line 3",
  );
  // The same text as `nnlangc check` prints for the same file.
  fs.writeFileSync(path.join(tmp, "playground.nn"), mistake);
  const cli = spawnSync(nnlangc, ["check", "playground.nn"], { cwd: tmp, encoding: "utf8" });
  check(cli.status === 1, "nnlangc check refuses the same file", `exit ${cli.status}`);
  check(cli.stderr.includes(report.text.trimEnd()) && report.text.includes(shown[0]), "the page's diagnostic is nnlangc check's, character for character");
  if (shots) await page.screenshot({ path: path.join(shots, "playground-mistake.png") });

  // 3. Fix it: select the 2 of `stride = 2` and type 1.
  await page.evaluate(() => {
    const s = document.getElementById("source");
    const at = s.value.indexOf("stride = 2") + "stride = ".length;
    s.setSelectionRange(at, at + 1);
  });
  await page.keyboard.type("1");
  await page.waitForFunction(() => window.playground.report?.ok, null, { timeout: 10_000 });
  check((await page.locator("#diagnostics .diagnostic").count()) === 0, "fixing it clears the diagnostic");
  check((await page.locator("#backdrop mark").count()) === 0, "and the underline");
  check((await page.textContent("#summary")).includes("[24, 24, 8]"), "the table shows the fixed shapes");

  // 4. Train the digits MLP.
  await page.selectOption("#examples", "digits_mlp");
  await page.waitForFunction(() => window.playground.report?.models[0]?.name === "DigitsMlp");
  const started = Date.now();
  await page.click("#train");
  await page.waitForFunction(() => window.playground.trained || /failed/.test(document.getElementById("status").textContent), null, {
    timeout: 60_000,
  });
  const seconds = (Date.now() - started) / 1000;
  const trained = await page.evaluate(() => window.playground.trained);
  const accuracy = trained?.test?.accuracy ?? 0;
  check(accuracy >= 0.9, "training the digits MLP in the page reaches 90% test accuracy", `${(100 * accuracy).toFixed(2)}% in ${seconds.toFixed(1)} s (${trained?.seconds.toFixed(1)} s training)`);
  check(seconds <= 60, "within 60 s");
  check((await page.locator("#confusion td").count()) === 100, "the confusion matrix is shown");
  if (shots) await page.screenshot({ path: path.join(shots, "playground-train.png") });

  // 5. Download the weights and evaluate them with nnlangc.
  const save = async (id, name) => {
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click(id)]);
    await dl.saveAs(path.join(tmp, name));
  };
  await save("#download-weights", "weights.safetensors");
  await save("#download-preprocess", "preprocess.json");
  const out = execFileSync(nnlangc, ["eval", path.join(root, "examples/digits_mlp.nn"), "--weights", path.join(tmp, "weights.safetensors")], {
    encoding: "utf8",
  });
  const cliAccuracy = Number(/accuracy\s+([\d.]+)%/.exec(out)?.[1]);
  check(cliAccuracy === Number((100 * accuracy).toFixed(2)), "nnlangc eval gives the downloaded weights the same accuracy", `${cliAccuracy}%`);
  // The matrix: the lines after its heading and its line of column numbers.
  const lines = out.split("\n");
  const from = lines.findIndex((l) => l.startsWith("confusion matrix")) + 2;
  const rows = lines.slice(from).filter((l) => l.trim()).map((l) => l.trim().split(/\s+/).slice(1).map(Number));
  check(JSON.stringify(rows) === JSON.stringify(trained.test.confusion), "and the same confusion matrix");

  // 6. The API on arrays, from JavaScript: Trainer.onArrays, evaluate, predict.
  const arrays = await page.evaluate(async () => {
    const m = await import("./pkg/nnlang_wasm.js");
    await m.default();
    const source = await (await fetch("examples/digits_mlp.nn")).text();
    // 200 "images" whose label is the brightest of their first ten pixels.
    const rows = 200, x = new Float32Array(rows * 64), y = new Float32Array(rows);
    let seed = 1;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let i = 0; i < rows; i++) {
      y[i] = i % 10;
      for (let j = 0; j < 64; j++) x[i * 64 + j] = j === y[i] ? 16 : 4 * random();
    }
    const t = m.Trainer.onArrays(source, x, y);
    t.train(() => {});
    const score = JSON.parse(t.evaluate(x, y));
    const out = t.predict(x.slice(0, 64));
    let refused = "";
    try { m.Trainer.onArrays(source, x.slice(0, 100), y); } catch (e) { refused = e.message; }
    return { accuracy: score.accuracy, outputs: out.length, sum: out.reduce((a, b) => a + b, 0), refused };
  });
  check(arrays.accuracy >= 0.95 && arrays.outputs === 10 && Math.abs(arrays.sum - 1) < 1e-5, "Trainer.onArrays trains, evaluates and predicts from JavaScript", JSON.stringify(arrays));
  check(arrays.refused.includes("100 values are not whole examples of 64 values"), "and refuses arrays that are not whole examples", arrays.refused);

  check(errors.length === 0, "no error in the page or its console", errors.join("; "));
  await page.close();
} finally {
  await browser.close();
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
if (failures) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
console.log("every browser check passed");
