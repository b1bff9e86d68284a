"""`nnlangc export --onnx` against `nnlangc run`, with onnxruntime as the ONNX implementation
(CI checks the same with tract: tests/onnx.rs). For every example, and for models with every
recurrent activation (tract reads every RNN node as tanh, so these are checked only here):
random weights saved as safetensors, the file exported, both run on the same random batch of
5 (then of 2: the batch is dynamic; a sequence of any length at two thirds of its longest),
and the largest difference reported (it must stay below 1e-5). Then every model of sequences
of variable length once more, exported with `--sequence-lengths`: a ragged batch in one call
against `nnlangc run` on each sequence alone.

onnxruntime is not a dependency of nnlang: run this from a virtual environment with
onnxruntime, onnx, numpy and safetensors.

Usage: python bench/onnx_check.py   (builds `cargo build --release`)
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "nnlangc")

# Recurrent activations tract cannot check (it runs every RNN node as tanh), and functions no
# example uses (GELU through Erf or Tanh, hard tanh as Clip).
EXTRA = {
    "gated": "model Gated {\n input x: [seq = 9, 4]\n x -> lstm(6) -> gru(5) -> lstm(4, output = last) -> dense(2)\n}\n",
    "gated_per_step": "model GatedSteps {\n input x: [seq <= 8, 3]\n x -> gru(6, output = sequence) -> dense(3) -> softmax\n}\n",
    "gated_bidirectional": "model GatedBoth {\n input x: [seq = 7, 3]\n x -> bidirectional(lstm(5), merge = add)\n"
    "   -> bidirectional(gru(4, output = last), merge = concat) -> dense(2)\n}\n",
    "rnn_relu": "model RnnRelu {\n input x: [seq <= 12, 5]\n x -> rnn(8, activation = relu) -> dense(3) -> softmax\n}\n",
    "rnn_sigmoid_bidirectional": "model RnnSigmoid {\n input x: [seq = 9, 4]\n"
    " x -> bidirectional(rnn(6, activation = sigmoid), merge = mul) -> rnn(4, output = last) -> dense(2)\n}\n",
    "gelu_hard_tanh": "model Smooth {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> gelu\n"
    " -> flatten -> dense(16) -> hard_tanh -> dense(8) -> gelu(approximate = tanh) -> dense(3) -> softmax\n}\n",
    "batchnorm": "model Bn {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu\n"
    " -> flatten -> dense(16) -> batchnorm(eps = 1e-3) -> dense(3) -> softmax\n}\n",
    "batchnorm_unfolded": "model BnUnfolded {\n input x: [6, 6, 2]\n let c = x -> conv(filters = 4, size = 3, pad = same)\n"
    " add(c, c -> relu) -> batchnorm -> flatten -> batchnorm -> dense(3) -> softmax\n}\n",
    "blocks": "block Res(width) {\n input x\n let y = x -> conv(width, 3, pad = same, bias = false) -> batchnorm -> relu\n"
    " add(x, y)\n}\nmodel Blocks {\n input x: [6, 6, 4]\n x -> [Res(4)] * 2 as stage1 -> Res(4) as class\n"
    " -> globalavgpool -> dense(8) -> batchnorm -> relu -> dense(3) -> softmax\n}\n",
    "batchnorm_sequence": "model BnSeq {\n input x: [seq <= 8, 3]\n x -> dense(5) -> batchnorm -> tanh -> rnn(4) -> dense(2)\n}\n",
    "ceiled": "model Ceiled {\n input x: [11, 10, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> relu -> maxpool(size = 2, round = ceil)\n"
    " -> avgpool(size = 3, stride = 2, round = ceil) -> dense(3) -> softmax\n}\n",
    "separable": "model Separable {\n input x: [12, 11, 4]\n x -> conv(filters = 8, size = 3, pad = same, groups = 2, bias = false) -> relu\n"
    " -> conv(filters = 8, size = 3, pad = same, groups = 8) -> batchnorm -> relu\n"
    " -> conv(filters = 16, size = 3, dilation = 2, pad = 2, groups = 8)\n"
    " -> conv(filters = 16, size = 3, stride = 2, dilation = 2, round = floor, groups = 16)\n"
    " -> conv(filters = 8, size = 1) -> globalavgpool -> dense(3) -> softmax\n}\n",
    "floored": "model Floored {\n input x: [13, 13, 1]\n x -> conv(filters = 4, size = 3) -> relu -> maxpool(size = 2, round = floor)\n"
    " -> avgpool(size = 3, stride = 2, round = floor) -> dense(3) -> softmax\n}\n",
    "attention": "model Att {\n input x: [seq <= 8, 3]\n x -> dense(8) -> positions(8, sinusoidal = true) -> attention(2, causal = true)\n"
    " -> relu -> attention(4) -> dense(3) -> softmax\n}\n",
    "global_pools": "model GlobalPools {\n input x: [7, 5, 2]\n let a = x -> conv(filters = 4, size = 3, pad = same) -> relu -> globalavgpool\n"
    " let b = x -> conv(filters = 3, size = 3) -> globalmaxpool\n concat(a, b) -> dense(3) -> softmax\n}\n",
    "rnn_leaky_identity": "model RnnLeaky {\n input x: [seq <= 10, 3]\n"
    " x -> bidirectional(rnn(5, activation = leaky_relu(0.2), output = sequence), merge = add)\n"
    "   -> bidirectional(rnn(4, activation = identity, output = last), merge = concat) -> dense(2)\n}\n",
}


def summary(path):
    out = subprocess.run([BIN, "check", path, "--json"], capture_output=True, text=True, check=True).stdout
    s = json.loads(out)
    return s[0] if isinstance(s, list) else s


def dims_of(shape):
    """The input's dimensions; a variable length at two thirds of its longest."""
    dims = []
    for d in shape:
        if isinstance(d, int):
            dims.append(d)
        elif "<=" in str(d):
            dims.append(max(1, 2 * int(str(d).split("=")[-1]) // 3))
        else:  # "seq = 28"
            dims.append(int(str(d).split("=")[-1]))
    return dims


def random_weights(s, rng, tmp):
    """Random weights of PyTorch's default scale for the model summarized as `s`, saved in
    `tmp`; their path."""
    tensors = {}
    for p in s["parameters"]:
        shape = p["shape"]
        a = 1.0 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else 0.1
        lo, hi = (0.5, 2.0) if p["name"].endswith("running_var") else (-a, a)
        tensors[p["name"]] = rng.uniform(lo, hi, size=shape).astype(np.float32)
        if p["name"].endswith("num_batches_tracked"):
            tensors[p["name"]] = np.array(7, dtype=np.int64)  # PyTorch's count of batches
    weights = os.path.join(tmp, "w.safetensors")
    save_file(tensors, weights)
    return weights


def check(path, tmp):
    s = summary(path)
    rng = np.random.default_rng(0)
    weights = random_weights(s, rng, tmp)
    model = os.path.join(tmp, "m.onnx")
    subprocess.run([BIN, "export", "--onnx", path, "--weights", weights, "--raw", "--output", model],
                   check=True, capture_output=True)
    onnx.checker.check_model(onnx.load(model), full_check=True)
    dims = dims_of(s["inputs"][0]["shape"])
    ids = s["inputs"][0].get("ids")  # token ids below this, for an embedding
    x = (rng.integers(0, ids, size=[5, *dims]) if ids else rng.uniform(-1, 1, size=[5, *dims])).astype(np.float32)
    np.save(os.path.join(tmp, "x.npy"), x)
    out = os.path.join(tmp, "y.npy")
    run = subprocess.run([BIN, "run", path, "--weights", weights, "--raw", "--input", os.path.join(tmp, "x.npy"),
                          "--output", out], capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr.strip().splitlines()[0]
    ours = np.load(out)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    theirs = sess.run(None, {name: x})[0]
    two = sess.run(None, {name: x[:2]})[0]
    if theirs.shape != ours.shape:
        return None, f"shapes differ: onnxruntime {theirs.shape}, nnlangc run {ours.shape}"
    diff = max(np.abs(ours - theirs).max(), np.abs(ours[:2] - two).max())
    return float(diff), None


def check_ragged(path, tmp):
    """A model of sequences of variable length, exported with `--sequence-lengths`: one ragged
    batch (every length from 1 to the longest) through onnxruntime against `nnlangc run` on
    each sequence alone at its own length; the steps inside each sequence compared."""
    s = summary(path)
    shape = s["inputs"][0]["shape"]
    if not shape or "<=" not in str(shape[0]):
        return None, None
    longest = int(str(shape[0]).split("=")[-1])
    rng = np.random.default_rng(1)
    weights = random_weights(s, rng, tmp)
    model = os.path.join(tmp, "m.onnx")
    subprocess.run([BIN, "export", "--onnx", "--sequence-lengths", path, "--weights", weights, "--raw",
                    "--output", model], check=True, capture_output=True)
    onnx.checker.check_model(onnx.load(model), full_check=True)
    rest = dims_of(shape[1:])
    lengths = np.array([max(1, longest - (7 * i) % longest) for i in range(5)], dtype=np.int32)
    ids = s["inputs"][0].get("ids")
    x = (rng.integers(0, ids, size=[5, longest, *rest]) if ids else rng.uniform(-1, 1, size=[5, longest, *rest]))
    x = x.astype(np.float32)
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    theirs = sess.run(None, {names[0]: x, names[1]: lengths})[0]
    worst = 0.0
    for i, n in enumerate(lengths):
        np.save(os.path.join(tmp, "x.npy"), x[i:i + 1, :n])
        out = os.path.join(tmp, "y.npy")
        run = subprocess.run([BIN, "run", path, "--weights", weights, "--raw", "--input", os.path.join(tmp, "x.npy"),
                              "--output", out], capture_output=True, text=True)
        if run.returncode != 0:
            return None, run.stderr.strip().splitlines()[0]
        ours = np.load(out)[0]
        mine = theirs[i, :n] if theirs.ndim == 3 else theirs[i]  # every step's output, or the last
        worst = max(worst, float(np.abs(ours - mine).max()))
    return worst, None


def main():
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    print(f"# onnxruntime {ort.__version__}, onnx {onnx.__version__} (checker passes every file); "
          "largest |nnlangc run − onnxruntime| over random batches of 5 and 2")
    failed = False
    with tempfile.TemporaryDirectory() as extra_dir:
        paths = sorted(glob.glob(os.path.join(ROOT, "examples", "*.nn")))
        for name, src in EXTRA.items():
            p = os.path.join(extra_dir, name + ".nn")
            with open(p, "w") as f:
                f.write(src)
            paths.append(p)
        for path in paths:
            name = os.path.basename(path)
            with tempfile.TemporaryDirectory() as tmp:
                diff, err = check(path, tmp)
            if err:
                print(f"{name}: FAILED ({err})")
                failed = True
                continue
            failed |= diff > 1e-5
            print(f"{name}: {diff:.2e}")
        print("# ragged batches: --sequence-lengths through onnxruntime against `nnlangc run` on each sequence alone")
        for path in paths:
            name = os.path.basename(path)
            with tempfile.TemporaryDirectory() as tmp:
                diff, err = check_ragged(path, tmp)
            if err:
                print(f"{name}: FAILED ({err})")
                failed = True
            elif diff is not None:
                failed |= diff > 1e-5
                print(f"{name} (lengths 1..n): {diff:.2e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
