"""Today's ConvNet against PyTorch: batch norms, a depthwise and a grouped convolution, a
dilated one, a floored stride and global average pooling, exported by `nnlangc export
--pytorch` and given the same weights and batch. Checked, every tensor (weights, gains,
biases, running averages) within 1e-5:

- evaluation mode: `nnlangc run` against the module's `eval()` forward;
- three SGD steps (momentum 0.9) and three AdamW steps on the whole batch (`nnlangc train
  --init … --epochs 3`), on one thread and on two threads sharing the batch. AdamW runs with
  `eps = 1e-3`: a convolution's bias before a batch norm (the net keeps three, one has
  `bias = false`) has a zero gradient up to rounding
  (the norm removes any shift), and with PyTorch's 1e-8 Adam turns that noise (~1e-9) into
  full steps of ±lr whose signs are the noise's — the two frameworks' last bits, not their
  arithmetic. With 1e-3 the noise moves nothing and every real gradient still takes Adam's
  step;
- label smoothing: `cross_entropy(smoothing = 0.1)` against `CrossEntropyLoss(label_smoothing
  = 0.1)`, three SGD steps;
- accumulation: batches of a quarter of the rows with `accumulate = 4` against one step on
  all of them (the same net without batch norm, whose statistics are per batch by design).

PyTorch runs in double precision: the reference is the arithmetic, not one float32 rounding
of it (PyTorch's own float32 gradients of this net are 1.3e-5 from its float64 ones at the
batch norm before the strided depthwise convolution, nnlang's 8e-9).

PyTorch is not a dependency of nnlang: run this from a virtual environment with torch, numpy
and safetensors.

Usage: python bench/pytorch_convnet_check.py   (builds `cargo build --release`)
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
ROWS, STEPS, CLASSES = 32, 3, 5
SHAPE = [12, 12, 3]
BN_NET = (
    "x -> conv(filters = 8, size = 3, pad = same) -> batchnorm -> relu\n"
    "    -> conv(filters = 8, size = 3, pad = same, groups = 8, bias = false) -> batchnorm -> relu\n"
    "    -> conv(filters = 16, size = 1, groups = 2) -> batchnorm -> relu\n"
    "    -> conv(filters = 16, size = 3, pad = 2, dilation = 2) -> batchnorm(momentum = 0.2) -> relu\n"
    "    -> conv(filters = 16, size = 3, stride = 2, round = floor, groups = 16) -> relu\n"
    "    -> globalavgpool -> dense(5) -> softmax"
)
PLAIN_NET = BN_NET.replace(" -> batchnorm(momentum = 0.2)", "").replace(" -> batchnorm", "")


def exported(src, tmp):
    out = os.path.join(tmp, "m.py")
    subprocess.run([BIN, "export", "--pytorch", src, "--output", out], check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("exported", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Net()


def write(tmp, body, loss, optimizer, batch, extra=""):
    src = os.path.join(tmp, "m.nn")
    dims = ", ".join(map(str, SHAPE))
    with open(src, "w") as f:
        f.write(f"model Net {{\n  input x: [{dims}]\n  {body}\n}}\n"
                f"train Net on d {{ loss = {loss}, optimizer = {optimizer}, batch = {batch}, epochs = {STEPS}, seed = 1{extra} }}\n"
                f"data d {{ train = npy(\"{tmp}/x.npy\", \"{tmp}/y.npy\") }}\n")
    return src


def start(model, tmp):
    """Random weights and running averages, saved for `--init`; a random batch."""
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
    x = torch.rand(ROWS, *SHAPE) * 2 - 0.5
    y = torch.randint(0, CLASSES, (ROWS,))
    np.save(os.path.join(tmp, "x.npy"), x.numpy())
    np.save(os.path.join(tmp, "y.npy"), y.numpy().astype(np.float32))
    return w0, x, y


def worst(ours, model):
    # Every tensor of PyTorch's state dict, its counts of batches (`num_batches_tracked`) too.
    theirs = model.state_dict()
    return max(float((ours[k].double() - v.double()).abs().max()) for k, v in theirs.items())


def train_ours(src, w0, tmp, threads=1):
    out = os.path.join(tmp, f"run{threads}")
    subprocess.run([BIN, "train", src, "--init", w0, "--out", out, "--quiet", "--threads", str(threads),
                    "--split", "batch"], check=True, capture_output=True)
    return load_file(os.path.join(out, "weights.safetensors"))


def smoothed_nll(probs, y, eps):
    logp = torch.log(probs)
    return (1 - eps) * torch.nn.functional.nll_loss(logp, y) + eps * (-logp.mean(dim=1)).mean()


def train_theirs(model, x, y, opt, eps=0.0, steps=STEPS):
    model.train()
    for _ in range(steps):
        loss = smoothed_nll(model(x.double()), y, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()


def adamw(model, lr, decay):
    weights = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    others = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.dim() > 1)]
    return torch.optim.AdamW([{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.999), eps=1e-3)


def evaluation(tmp):
    src = write(tmp, BN_NET, "cross_entropy", "sgd(lr = 0.05)", ROWS)
    model = exported(src, tmp)
    w0, x, _ = start(model, tmp)
    out = os.path.join(tmp, "out.npy")
    subprocess.run([BIN, "run", src, "--weights", w0, "--input", os.path.join(tmp, "x.npy"), "--output", out],
                   check=True, capture_output=True)
    model.double().eval()
    with torch.no_grad():
        theirs = model(x.double()).numpy()
    return float(np.abs(np.load(out) - theirs).max())


def sgd(tmp, threads, eps=0.0):
    loss = "cross_entropy" if eps == 0 else f"cross_entropy(smoothing = {eps})"
    src = write(tmp, BN_NET, loss, "sgd(lr = 0.05, momentum = 0.9)", ROWS)
    model = exported(src, tmp)
    w0, x, y = start(model, tmp)
    ours = train_ours(src, w0, tmp, threads)
    model.double()
    train_theirs(model, x, y, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), eps)
    return worst(ours, model)


def adam_w(tmp, threads):
    src = write(tmp, BN_NET, "cross_entropy", "adamw(lr = 0.01, weight_decay = 0.1, eps = 1e-3)", ROWS)
    model = exported(src, tmp)
    w0, x, y = start(model, tmp)
    ours = train_ours(src, w0, tmp, threads)
    model.double()
    train_theirs(model, x, y, adamw(model, 0.01, 0.1))
    return worst(ours, model)


def accumulated(tmp):
    src = write(tmp, PLAIN_NET, "cross_entropy", "sgd(lr = 0.05, momentum = 0.9)", ROWS // 4, ", accumulate = 4")
    model = exported(src, tmp)
    w0, x, y = start(model, tmp)
    ours = train_ours(src, w0, tmp)
    model.double()
    train_theirs(model, x, y, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    return worst(ours, model)


def main():
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    print(f"# torch {torch.__version__}; a batch of {ROWS} [{', '.join(map(str, SHAPE))}] images, {STEPS} steps: "
          "largest |nnlang − PyTorch| over every tensor")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(("evaluation mode (nnlangc run vs eval())", evaluation(tmp)))
    for threads in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            results.append((f"SGD momentum 0.9, {threads} thread(s)", sgd(tmp, threads)))
        with tempfile.TemporaryDirectory() as tmp:
            results.append((f"AdamW (decay 0.1), {threads} thread(s)", adam_w(tmp, threads)))
    with tempfile.TemporaryDirectory() as tmp:
        results.append(("label smoothing 0.1, SGD", sgd(tmp, 1, eps=0.1)))
    with tempfile.TemporaryDirectory() as tmp:
        results.append((f"accumulate = 4 × {ROWS // 4} rows vs {ROWS}", accumulated(tmp)))
    for name, diff in results:
        print(f"{name:44s} {diff:.2e}")
    sys.exit(1 if any(d > 1e-5 for _, d in results) else 0)


if __name__ == "__main__":
    main()
