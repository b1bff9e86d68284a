"""nnlang's Adam and AdamW against PyTorch's: the same weights and batch, three steps each —
on an MLP, and on gated recurrent nets (`lstm`, `gru`, bidirectional; PyTorch's nn.LSTM and
nn.GRU through the exported module), and on an embedding of token ids (nn.Embedding)
(`nnlangc train --init … --epochs 3` with the batch the whole data set), then every tensor
compared. nnlang's AdamW decays the weights only (as its L1/L2 do), so PyTorch's is given
two parameter groups: the weights with the decay, the biases without. PyTorch is not a
dependency of nnlang: run this from a virtual environment with torch, numpy and safetensors.

Usage: python bench/pytorch_optim_check.py   (builds `cargo build --release`)
"""
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "nnlangc")
ROWS, STEPS = 64, 3
MLP = ("model M {\n  input x: [12]\n  x -> dense(16) -> relu -> dense(8) -> tanh -> dense(3) -> softmax\n}\n", (12,))
GATED = ("model M {\n  input x: [6, 4]\n  x -> lstm(8) -> gru(5, output = last) -> dense(3) -> softmax\n}\n", (6, 4))
BOTH_WAYS = ("model M {\n  input x: [5, 3]\n  x -> bidirectional(lstm(6), merge = add)\n"
             "  -> bidirectional(gru(4, output = last), merge = concat) -> dense(3) -> softmax\n}\n", (5, 3))
# Token ids through an embedding (nn.Embedding): rows 0..8 of the table, each used several times.
EMBEDDED = ("model M {\n  input x: [seq = 6] ids < 9\n  x -> embedding(9, 5) -> lstm(8, output = last) -> dense(3) -> softmax\n}\n",
            (6,), 9)
# Layer and RMS normalization (nn.LayerNorm, nn.RMSNorm) after dense layers.
LAYER_NORMED = ("model M {\n  input x: [12]\n  x -> dense(16) -> layernorm -> relu -> dense(8) -> rmsnorm(eps = 1e-3) -> tanh -> dense(3) -> softmax\n}\n", (12,))
CASES = [
    ("adam", "adam(lr = 0.01)", 0.0, MLP),
    ("adamw", "adamw(lr = 0.01, weight_decay = 0.1)", 0.1, MLP),
    ("adamw default", "adamw(lr = 0.003)", 0.01, MLP),
    ("lstm, gru", "adam(lr = 0.01)", 0.0, GATED),
    ("both ways", "adamw(lr = 0.01, weight_decay = 0.1)", 0.1, BOTH_WAYS),
    ("embedding", "adam(lr = 0.01)", 0.0, EMBEDDED),
    ("embedding w", "adamw(lr = 0.01, weight_decay = 0.1)", 0.1, EMBEDDED),
    ("layernorm", "adam(lr = 0.01)", 0.0, LAYER_NORMED),
]


def check(optimizer, decay, model_src, tmp):
    model_src, dims, *ids = model_src
    src = os.path.join(tmp, "m.nn")
    with open(src, "w") as f:
        f.write(model_src +
                f"train M on d {{ loss = cross_entropy, optimizer = {optimizer}, batch = {ROWS}, epochs = {STEPS}, seed = 1 }}\n"
                f"data d {{ train = npy(\"{tmp}/x.npy\", \"{tmp}/y.npy\") }}\n")
    out = os.path.join(tmp, "m.py")
    subprocess.run([BIN, "export", "--pytorch", src, "--output", out], check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("exported", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.M()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            a = 1.0 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.1
            p.uniform_(-a, a)
    w0 = os.path.join(tmp, "w0.safetensors")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, w0)
    x = torch.randint(0, ids[0], (ROWS, *dims)).float() if ids else torch.rand(ROWS, *dims) * 2 - 1
    y = torch.randint(0, 3, (ROWS,))
    np.save(os.path.join(tmp, "x.npy"), x.numpy())
    np.save(os.path.join(tmp, "y.npy"), y.numpy().astype(np.float32))
    run = os.path.join(tmp, "run")
    subprocess.run([BIN, "train", src, "--init", w0, "--out", run, "--quiet"], check=True, capture_output=True)
    ours = load_file(os.path.join(run, "weights.safetensors"))
    # nnlang decays the weights (`weight`, `weight_ih_l0`, …), not the biases.
    weights = [p for n, p in model.named_parameters() if n.split(".")[-1].startswith("weight")]
    others = [p for n, p in model.named_parameters() if not n.split(".")[-1].startswith("weight")]
    lr = float(optimizer.split("lr = ")[1].split(")")[0].split(",")[0])
    opt = torch.optim.AdamW([{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(STEPS):
        loss = torch.nn.functional.nll_loss(torch.log(model(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return max(float((ours[k] - v).abs().max()) for k, v in model.state_dict().items())


def main():
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    print(f"# torch {torch.__version__}; {STEPS} steps on a batch of {ROWS}: largest |nnlang − PyTorch| over every tensor")
    failed = False
    for name, optimizer, decay, model in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            worst = check(optimizer, decay, model, tmp)
        failed |= worst > 1e-5
        print(f"{name:14s} {optimizer:40s} {worst:.2e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
