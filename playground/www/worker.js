// Training off the page's thread: the bundled data files are held in the WebAssembly
// module's memory under the paths the examples' `data` blocks name, then the source's
// `train` block runs to its end, its progress posted back as it goes.
import init, { Trainer, provideFile } from "./pkg/nnlang_wasm.js";

const ready = (async () => {
  await init();
  const files = await (await fetch("data/index.json")).json();
  for (const path of files) {
    const bytes = new Uint8Array(await (await fetch(path)).arrayBuffer());
    provideFile(path, bytes);
  }
})();

onmessage = async ({ data }) => {
  try {
    await ready;
    const trainer = new Trainer(data.source);
    postMessage({ kind: "start", parameters: trainer.parameterCount() });
    const result = JSON.parse(trainer.train((message) => postMessage(JSON.parse(message))));
    const weights = trainer.weights();
    const preprocess = trainer.preprocess() ?? null;
    postMessage({ kind: "done", result, weights, preprocess }, [weights.buffer]);
  } catch (e) {
    postMessage({ kind: "error", message: String(e?.message ?? e) });
  }
};
