"""nnlang's layer normalization, multi-head attention (with a padding mask and a causal mask)
and a whole pre-norm transformer block against PyTorch's nn.LayerNorm, nn.MultiheadAttention
(`key_padding_mask`, causal `attn_mask`) and the same block, through the module
`nnlangc export --pytorch` writes, from the same weights, on token ids:

- padding: a ragged batch (sequences of 1 to 6 steps) through PyTorch with its
  `key_padding_mask`, against `nnlangc run` on each sequence alone at its own length (the
  steps inside each sequence compared);
- forward: `nnlangc run` on full sequences, and the loss of the first training step (the mean
  cross-entropy over every step), against PyTorch's;
- gradients: one step of `sgd(lr = 1)` on the whole batch (a label at every step, from a
  `.npy` pair), so that `w0 − w1` is nnlang's gradient, against `loss.backward()`;
- three AdamW steps: every tensor after them.

All within 1e-5 (the script exits 1 otherwise). PyTorch is not a dependency of nnlang: run
this from a virtual environment with torch, numpy and safetensors.

Usage: python bench/pytorch_attention_check.py   (builds `cargo build --release`)
"""
import csv
import inspect
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "nnlangc")
ROWS, STEPS, VOCAB, CLASSES = 16, 6, 9, 3
HEAD = f"model M {{\n  input x: [seq <= {STEPS}] ids < {VOCAB}\n  x -> embedding({VOCAB}, 8)"
# Training reads `.npy` arrays, whose sequences fill the steps.
FULL = f"[seq <= {STEPS}]", f"[seq = {STEPS}]"
CASES = [
    ("layernorm", "", f"{HEAD} -> layernorm -> dense({CLASSES}) -> softmax\n}}\n"),
    ("attention, padding mask", "", f"{HEAD} -> attention(2) -> dense({CLASSES}) -> softmax\n}}\n"),
    ("attention, causal", "", f"{HEAD} -> attention(4, causal = true) -> dense({CLASSES}) -> softmax\n}}\n"),
    (
        "pre-norm block",
        "block B(w) {\n  input x\n  let a = x -> layernorm -> attention(2, causal = true)\n  let h = add(x, a)\n"
        "  let m = h -> layernorm -> dense(4 * w) -> gelu -> dense(w)\n  add(h, m)\n}\n",
        f"{HEAD} -> positions({STEPS}) -> [B(8)] * 2 -> layernorm -> dense({CLASSES}) -> softmax\n}}\n",
    ),
]


def load_module(path):
    spec = importlib.util.spec_from_file_location("exported", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.M()


def nnlang(tmp, blocks, model, optimizer, epochs, w0):
    src = os.path.join(tmp, "full.nn")
    with open(src, "w") as f:
        f.write(blocks + model.replace(*FULL) +
                f"train M on d {{ loss = cross_entropy, optimizer = {optimizer}, batch = {ROWS}, epochs = {epochs}, seed = 1 }}\n"
                f"data d {{ train = npy(\"{tmp}/x.npy\", \"{tmp}/y.npy\") }}\n")
    run = os.path.join(tmp, f"run-{epochs}")
    done = subprocess.run([BIN, "train", src, "--init", w0, "--out", run, "--quiet", "--threads", "1"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"nnlangc train failed: {done.stderr.strip()}")
    with open(os.path.join(run, "metrics.csv")) as f:
        first_loss = float(next(csv.DictReader(f))["train_loss"])
    return src, load_file(os.path.join(run, "weights.safetensors")), first_loss


def check(blocks, model_src, tmp):
    src = os.path.join(tmp, "m.nn")
    with open(src, "w") as f:
        f.write(blocks + model_src)
    out = os.path.join(tmp, "m.py")
    subprocess.run([BIN, "export", "--pytorch", src, "--output", out], check=True, capture_output=True)
    info = json.loads(subprocess.run([BIN, "check", src, "--json"], check=True, capture_output=True).stdout)
    summary = info[0] if isinstance(info, list) else info
    summary = summary.get("models", [summary])[0] if "models" in summary else summary
    roles = {p["name"]: p["role"] for p in summary["parameters"]}
    torch.manual_seed(0)
    model = load_module(out)
    with torch.no_grad():
        for p in model.parameters():
            a = 1.0 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.3
            p.uniform_(-a, a)
    w0 = os.path.join(tmp, "w0.safetensors")
    state0 = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state0, w0)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, STEPS + 1, (ROWS,), generator=g)
    lengths[0] = STEPS
    ids = torch.randint(0, VOCAB, (ROWS, STEPS), generator=g)
    labels = torch.randint(0, CLASSES, (ROWS, STEPS), generator=g)
    np.save(os.path.join(tmp, "x.npy"), ids.numpy().astype(np.float32))
    np.save(os.path.join(tmp, "y.npy"), labels.numpy().astype(np.float32))

    def loss_of(m):
        p = m(ids.float())
        return torch.nn.functional.nll_loss(torch.log(p.reshape(-1, CLASSES)), labels.reshape(-1))

    def run(x):
        np.save(os.path.join(tmp, "in.npy"), x)
        out = os.path.join(tmp, "out.npy")
        subprocess.run([BIN, "run", src, "--weights", w0, "--input", os.path.join(tmp, "in.npy"), "--output", out],
                       check=True, capture_output=True)
        return np.load(out)

    worst = {}
    # Padding: PyTorch's masked batch against each sequence alone.
    with torch.no_grad():
        takes_lengths = "lengths" in inspect.signature(model.forward).parameters
        masked = (model(ids.float(), lengths) if takes_lengths else model(ids.float())).numpy()
    worst["padding"] = max(float(np.abs(run(ids[i:i + 1, :n].numpy().astype(np.float32))[0] - masked[i, :n]).max())
                           for i, n in enumerate(lengths.tolist()))
    # Forward: full sequences.
    with torch.no_grad():
        want = model(ids.float()).numpy()
    worst["forward"] = float(np.abs(run(ids.numpy().astype(np.float32)) - want).max())
    # Gradients: one step of SGD with lr = 1; and the first loss.
    _, w1, first = nnlang(tmp, blocks, model_src, "sgd(lr = 1)", 1, w0)
    model.zero_grad()
    loss = loss_of(model)
    loss.backward()
    worst["loss"] = abs(first - float(loss.detach()))
    grads = dict(model.named_parameters())
    worst["gradients"] = max(float(((state0[k] - w1[k]) - grads[k].grad).abs().max()) for k in grads)
    # Three AdamW steps.
    _, w3, _ = nnlang(tmp, blocks, model_src, "adamw(lr = 0.01, weight_decay = 0.1)", 3, w0)
    model.load_state_dict(state0)
    decayed = [p for n, p in model.named_parameters() if roles.get(n) in ("weight", "embedding")]
    others = [p for n, p in model.named_parameters() if roles.get(n) not in ("weight", "embedding")]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
                            lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(3):
        opt.zero_grad()
        loss_of(model).backward()
        opt.step()
    # The key part of `in_proj_bias` shifts every score of a query by the same amount, which the
    # softmax cancels: its gradient is zero but for rounding (below 1e-7 on both sides), which
    # Adam's normalization blows up into updates of noise (nn.MultiheadAttention's too). It is
    # compared apart; every other value within 1e-5.
    def apart(k, v):
        if k.endswith("in_proj_bias"):
            d = v.numel() // 3
            return torch.cat([v[:d], v[2 * d:]])
        return v
    worst["adamw x3"] = max(float((apart(k, w3[k]) - apart(k, v)).abs().max()) for k, v in model.state_dict().items())
    keys = [k for k in grads if k.endswith("in_proj_bias")]
    if keys:
        d = grads[keys[0]].numel() // 3
        worst["k-bias |grad|"] = max(max(float(grads[k].grad[d:2 * d].abs().max()), float((state0[k] - w1[k])[d:2 * d].abs().max()))
                                     for k in keys)
    if os.environ.get("DEBUG"):
        for k, v in model.state_dict().items():
            print(k, roles.get(k), float((w3[k] - v).abs().max()))
    return worst


def main():
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    print(f"# torch {torch.__version__}; batch of {ROWS} ragged sequences (1 to {STEPS} steps): "
          "largest |nnlang − PyTorch|")
    failed = False
    for name, blocks, model in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            worst = check(blocks, model, tmp)
        failed |= any(v > 1e-5 for v in worst.values())
        print(f"{name:24s} " + "  ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
