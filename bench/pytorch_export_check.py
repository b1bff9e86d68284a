"""`nnlangc export --pytorch` against `nnlangc run`: for every runnable example, the exported
module is given random weights (saved as safetensors for nnlang), both run on the same random
batch, and the largest difference of their outputs is reported (it must stay below 1e-5).
PyTorch is not a dependency of nnlang: run this from a virtual environment with torch, numpy
and safetensors.

Usage: python bench/pytorch_export_check.py   (builds `cargo build --release`)
"""
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "nnlangc")

# Functions no example uses: every activation of the table, in a dense net, a ConvNet and a
# recurrence (each recurrent activation goes through the exported Elman module).
EXTRA = {
    "activations": "model Acts {\n input x: [12]\n x -> dense(16) -> gelu -> dense(16) -> hard_tanh\n"
    " -> dense(16) -> gelu(approximate = tanh) -> dense(16) -> leaky_relu(alpha = 0.2) -> dense(16) -> sigmoid\n"
    " -> dense(8) -> relu -> dense(8) -> identity -> dense(3) -> softmax\n}\n",
    "conv_gelu": "model ConvGelu {\n input x: [8, 8, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> gelu\n"
    " -> maxpool(size = 2) -> dense(8) -> hard_tanh -> dense(3) -> softmax\n}\n",
    "batchnorm_dense": "model BnDense {\n input x: [12]\n x -> dense(16) -> batchnorm -> relu"
    " -> dense(8) -> batchnorm(momentum = 0.3, eps = 1e-3) -> dense(3) -> softmax\n}\n",
    "batchnorm_conv": "model BnConv {\n input x: [8, 8, 2]\n x -> conv(filters = 4, size = 3, pad = same)"
    " -> batchnorm -> relu -> maxpool(size = 2) -> flatten -> batchnorm -> dense(3) -> softmax\n}\n",
    "batchnorm_sequence": "model BnSeq {\n input x: [seq = 6, 4]\n x -> dense(5) -> batchnorm -> tanh"
    " -> rnn(4, output = last) -> dense(2)\n}\n",
    "ceiled": "model Ceiled {\n input x: [11, 10, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> relu -> maxpool(size = 2, round = ceil)\n"
    " -> avgpool(size = 3, stride = 2, round = ceil) -> dense(3) -> softmax\n}\n",
    "separable": "model Separable {\n input x: [12, 11, 4]\n x -> conv(filters = 8, size = 3, pad = same, groups = 2, bias = false) -> relu\n"
    " -> conv(filters = 8, size = 3, pad = same, groups = 8) -> batchnorm -> relu\n"
    " -> conv(filters = 16, size = 3, dilation = 2, pad = 2, groups = 8)\n"
    " -> conv(filters = 16, size = 3, stride = 2, dilation = 2, round = floor, groups = 16)\n"
    " -> conv(filters = 8, size = 1) -> globalavgpool -> dense(3) -> softmax\n}\n",
    "floored": "model Floored {\n input x: [13, 13, 1]\n x -> conv(filters = 4, size = 3) -> relu -> maxpool(size = 2, round = floor)\n"
    " -> avgpool(size = 3, stride = 2, round = floor) -> dense(3) -> softmax\n}\n",
    "global_pools": "model GlobalPools {\n input x: [7, 5, 2]\n let a = x -> conv(filters = 4, size = 3, pad = same) -> relu -> globalavgpool\n"
    " let b = x -> conv(filters = 3, size = 3) -> globalmaxpool\n concat(a, b) -> dense(3) -> softmax\n}\n",
    "blocks": "block Res(width) {\n input x\n let y = x -> conv(width, 3, pad = same, bias = false) -> batchnorm -> relu\n"
    " add(x, y)\n}\nmodel Blocks {\n input x: [6, 6, 4]\n x -> [Res(4)] * 2 as stage1 -> Res(4) as class\n"
    " -> globalavgpool -> dense(8) -> batchnorm -> relu -> dense(3) -> softmax\n}\n",
    "gated": "model Gated {\n input x: [seq = 6, 4]\n x -> lstm(5) -> gru(4) -> lstm(3, output = last) -> dense(2)\n}\n",
    "gated_bidirectional": "model GatedBoth {\n input x: [seq = 6, 4]\n x -> bidirectional(lstm(5), merge = mul)\n"
    "   -> bidirectional(gru(3), merge = add) -> bidirectional(lstm(3, output = last), merge = concat) -> dense(2)\n}\n",
    "gated_last": "model GatedLast {\n input x: [seq = 5, 3]\n x -> gru(6, output = last) -> dense(3) -> softmax\n}\n",
    "rnn_activations": "model RnnActs {\n input x: [seq = 6, 4]\n x -> rnn(5, activation = relu)\n"
    " -> bidirectional(rnn(4, activation = leaky_relu(alpha = 0.2)), merge = add) -> rnn(4, activation = sigmoid)\n"
    " -> rnn(3, activation = identity, output = last) -> dense(2)\n}\n",
}


def input_shape(path, tmp):
    """The input's dimensions, from `nnlangc check --json` (a variable length at its longest)."""
    import json
    out = subprocess.run([BIN, "check", path, "--json"], capture_output=True, text=True, check=True).stdout
    summary = json.loads(out)
    first = summary[0] if isinstance(summary, list) else summary
    dims = first["inputs"][0]["shape"]
    shape = []
    for d in dims:
        if isinstance(d, int):
            shape.append(d)
        else:  # "seq <= 29" or "seq = 28"
            shape.append(int(str(d).split("=")[-1].strip()))
    return shape


def check(path, tmp):
    src = os.path.join(tmp, "model.py")
    subprocess.run([BIN, "export", "--pytorch", path, "--output", src], check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location("exported", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    classes = [c for n, c in vars(mod).items() if isinstance(c, type) and issubclass(c, torch.nn.Module)
               and c.__module__ == "exported" and n not in ("Elman", "Local")]
    model = classes[-1]()
    torch.manual_seed(0)
    # PyTorch's default scale, 1/sqrt(fan_in): a recurrence with much larger weights is
    # chaotic, and then float rounding differences (nnlang's fast tanh) grow step by step.
    with torch.no_grad():
        for p in model.parameters():
            a = 1.0 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.1
            p.uniform_(-a, a)
        # Running statistics away from their start (mean 0, variance 1), so that they count.
        for n, b in model.named_buffers():
            if n.endswith("running_mean"):
                b.uniform_(-0.5, 0.5)
            elif n.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    model.eval()
    weights = os.path.join(tmp, "w.safetensors")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, weights)
    shape = input_shape(path, tmp)
    x = torch.rand(5, *shape) * 2 - 1
    np.save(os.path.join(tmp, "x.npy"), x.numpy())
    out = os.path.join(tmp, "y.npy")
    run = subprocess.run([BIN, "run", path, "--weights", weights, "--raw", "--input", os.path.join(tmp, "x.npy"),
                          "--output", out], capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr.strip().splitlines()[0]
    ours = np.load(out)
    with torch.no_grad():
        theirs = model(x).numpy()
    return float(np.abs(ours.reshape(theirs.shape) - theirs).max()), None


def main():
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    print(f"# torch {torch.__version__}; largest |nnlangc run − exported module| over a random batch of 5")
    failed = False
    extra_dir = tempfile.mkdtemp()
    extras = []
    for stem, src in EXTRA.items():
        extras.append(os.path.join(extra_dir, f"{stem}.nn"))
        with open(extras[-1], "w") as f:
            f.write(src)
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.nn"))) + extras:
        name = os.path.basename(path)
        with tempfile.TemporaryDirectory() as tmp:
            diff, err = check(path, tmp)
        if err:
            print(f"{name}: not compared ({err})")
            continue
        failed |= diff > 1e-5
        print(f"{name}: {diff:.2e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
