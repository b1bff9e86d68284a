"""nnlang's `batchnorm` against PyTorch's `BatchNorm1d`/`BatchNorm2d` in training: the same
weights and batch through both, one SGD step each (`nnlangc train --init … --epochs 1` with the
batch the whole data set), then every tensor compared — weights, gains, biases and the
running averages (PyTorch updates them in the forward pass, nnlang after the step; both with
the unbiased variance). With `--threads 2` the batch is shared between two workers that meet
for the whole batch's statistics; the result must be the same within rounding. PyTorch is not
a dependency of nnlang: run this from a virtual environment with torch, numpy and safetensors.

Usage: python bench/pytorch_batchnorm_check.py   (builds `cargo build --release`)
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

# (name, model body, input shape, classes)
CASES = [
    ("dense", "x -> dense(16) -> batchnorm -> relu -> dense(8) -> batchnorm(momentum = 0.3, eps = 1e-3) -> dense(3) -> softmax",
     [12], 3),
    ("conv", "x -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)"
     " -> flatten -> batchnorm -> dense(3) -> softmax", [8, 8, 2], 3),
    # One channel in: the convolution is computed again for its batch norm (never stored).
    ("conv1", "x -> conv(filters = 6, size = 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)"
     " -> flatten -> dense(3) -> softmax", [8, 8, 1], 3),
    ("sequence", "x -> dense(5) -> batchnorm -> tanh -> rnn(6, output = last) -> dense(4) -> softmax", ["seq = 7", 3], 4),
]
ROWS = 48
LR = 0.1


def load_module(path, out):
    subprocess.run([BIN, "export", "--pytorch", path, "--output", out], check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("exported_" + os.path.basename(path)[:-3], out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    classes = [c for n, c in vars(mod).items() if isinstance(c, type) and issubclass(c, torch.nn.Module)
               and c.__module__ == mod.__name__ and n not in ("Elman", "Local")]
    return classes[-1]()


def check(name, body, shape, classes, threads, tmp):
    dims = ", ".join(str(d) for d in shape)
    src = os.path.join(tmp, f"{name}.nn")
    with open(src, "w") as f:
        f.write(f"model Bn {{\n  input x: [{dims}]\n  {body}\n}}\n"
                f"train Bn on d {{ loss = cross_entropy, optimizer = sgd(lr = {LR}), batch = {ROWS}, epochs = 1, seed = 1 }}\n"
                f"data d {{ train = npy(\"{tmp}/x.npy\", \"{tmp}/y.npy\") }}\n")
    model = load_module(src, os.path.join(tmp, f"{name}.py"))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            a = 1.0 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.3
            p.uniform_(-a, a)
        for n, b in model.named_buffers():
            if n.endswith("running_mean"):
                b.uniform_(-0.5, 0.5)
            elif n.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    w0 = os.path.join(tmp, "w0.safetensors")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, w0)
    x = torch.rand(ROWS, *[int(str(d).split("=")[-1]) for d in shape]) * 2 - 1 + 0.5
    y = torch.randint(0, classes, (ROWS,))
    np.save(os.path.join(tmp, "x.npy"), x.numpy())
    np.save(os.path.join(tmp, "y.npy"), y.numpy().astype(np.float32))
    out = os.path.join(tmp, "run")
    subprocess.run([BIN, "train", src, "--init", w0, "--out", out, "--quiet", "--threads", str(threads),
                    "--split", "batch"], check=True, capture_output=True)
    ours = load_file(os.path.join(out, "weights.safetensors"))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    probs = model(x)
    loss = torch.nn.functional.nll_loss(torch.log(probs), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    # Every tensor of PyTorch's state dict, its count of batches (`num_batches_tracked`) too.
    theirs = model.state_dict()
    worst = max(float((ours[k].double() - v.double()).abs().max()) for k, v in theirs.items())
    stats = max(float((ours[k] - v).abs().max()) for k, v in theirs.items() if "running" in k)
    return worst, stats


def main():
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    print(f"# torch {torch.__version__}; one SGD step on a batch of {ROWS}: largest |nnlang − PyTorch| over every tensor")
    failed = False
    for name, body, shape, classes in CASES:
        for threads in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                worst, stats = check(name, body, shape, classes, threads, tmp)
            failed |= worst > 1e-5
            print(f"{name:9s} threads {threads}: every tensor {worst:.2e}, running averages {stats:.2e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
