"""Batch-1 generation with the Shakespeare transformer in PyTorch, as `nnlangc sample` does it:
the model exported by `nnlangc export --pytorch` with the run's weights, one thread, eval mode
and no_grad; every new character reads the window of the last 128 again (no cache on either
side), the same temperature sampling. Prints the time per character (median of REPS runs).

    python bench/pytorch_generation.py MODEL_PY WEIGHTS [--chars 400] [--reps 5]
"""
import argparse, importlib.util, statistics, time

import torch
from safetensors.torch import load_file

p = argparse.ArgumentParser()
p.add_argument("module")
p.add_argument("weights")
p.add_argument("--chars", type=int, default=400)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--window", type=int, default=128)
a = p.parse_args()
torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("exported", a.module)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
model = mod.CharTransformer()
model.load_state_dict(load_file(a.weights))
model.eval()
g = torch.Generator().manual_seed(7)
times = []
with torch.no_grad():
    for _ in range(a.reps):
        history = [1] * a.window  # a full window from the start, as a long prime gives
        t = time.perf_counter()
        for _ in range(a.chars):
            x = torch.tensor(history[-a.window:], dtype=torch.int64)[None]
            probs = model(x)[0, -1].double() ** (1 / 0.7)
            history.append(int(torch.multinomial(probs / probs.sum(), 1, generator=g)))
        times.append((time.perf_counter() - t) / a.chars * 1e3)
print(f"pytorch eager  {statistics.median(times):.3f} ms per character (min {min(times):.3f}, max {max(times):.3f}, {a.reps} runs of {a.chars})")
