"""nnlang's Elman `rnn` against PyTorch's `nn.RNN`: the same weights and batch through both,
then the outputs (softmax probabilities), the mean cross-entropy and every parameter's
gradient compared. PyTorch is not a dependency of nnlang: run this from a virtual
environment that has torch, numpy and safetensors.

Usage: python bench/pytorch_rnn_check.py   (builds `cargo run --release --example rnn_gradients`)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [
    # (activation, output, steps, features, hidden, classes, batch, bidirectional)
    ("tanh", "last", 7, 5, 16, 4, 9, False),
    ("relu", "last", 7, 5, 16, 4, 9, False),
    ("tanh", "sequence", 6, 3, 8, 5, 11, False),
    ("relu", "sequence", 28, 28, 32, 10, 16, False),
    ("tanh", "last", 7, 5, 16, 4, 9, True),
    ("tanh", "sequence", 6, 3, 8, 5, 11, True),
    ("relu", "last", 12, 4, 10, 3, 8, True),
]


def check(act, output, steps, features, hidden, classes, batch, bi, binary, tmp):
    torch.manual_seed(3)
    rnn = torch.nn.RNN(features, hidden, nonlinearity=act, batch_first=True, bidirectional=bi)
    width = 2 * hidden if bi else hidden
    fc_in = width if output == "last" else steps * width
    fc = torch.nn.Linear(fc_in, classes)
    with torch.no_grad():  # larger weights than the default, so that relu units stay alive
        for p in list(rnn.parameters()) + list(fc.parameters()):
            p.uniform_(-0.5, 0.5)
    x = torch.rand(batch, steps, features) * 2 - 1
    y = torch.randint(0, classes, (batch,))
    layer = "bidirectional_0" if bi else "rnn_0"
    names = {f"{layer}.{n}": p for n, p in rnn.named_parameters()}
    names.update({"dense_0.weight": fc.weight, "dense_0.bias": fc.bias})
    save_file({k: v.detach().contiguous() for k, v in names.items()}, os.path.join(tmp, "w.safetensors"))
    np.save(os.path.join(tmp, "x.npy"), x.numpy().reshape(batch, steps, features))
    np.save(os.path.join(tmp, "y.npy"), y.numpy().astype(np.float32))
    layer_src = f"rnn({hidden}, activation = {act}, output = {output})"
    if bi:
        layer_src = f"bidirectional({layer_src}, merge = concat)"
    src = f"model M {{ input x: [{steps}, {features}]\n x -> {layer_src} -> dense({classes}) -> softmax }}\n"
    with open(os.path.join(tmp, "m.nn"), "w") as f:
        f.write(src)
    run = subprocess.run([binary, "m.nn", "w.safetensors", "x.npy", "y.npy", "."], cwd=tmp,
                         capture_output=True, text=True, check=True)
    ours_loss = float(run.stdout.split()[1])

    seq, h_n = rnn(x)
    if output == "last":
        # h_n: the forward's final state, then (bidirectional) the reverse's.
        feats = torch.cat([h_n[0], h_n[1]], dim=1) if bi else h_n[-1]
    else:
        feats = seq.reshape(batch, -1)
    logits = fc(feats)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    probs = torch.softmax(logits, dim=1).detach().numpy()
    ours = np.load(os.path.join(tmp, "outputs.npy"))
    grads = load_file(os.path.join(tmp, "gradients.safetensors"))
    # Differences relative to each tensor's largest magnitude (absolute below 1): relu
    # states can grow by orders of magnitude over many steps, and every difference with them.
    def rel(a, b):
        return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))

    worst = {"outputs": rel(ours, probs), "loss": rel(np.float64(ours_loss), np.float64(loss.item()))}
    for k, p in names.items():
        worst[k] = rel(grads[k].numpy(), p.grad.numpy())
    worst["largest gradient"] = max(float(p.grad.abs().max()) for p in names.values())
    return worst


def main():
    subprocess.run(["cargo", "build", "-q", "--release", "--example", "rnn_gradients"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "examples", "rnn_gradients")
    print(f"# torch {torch.__version__}; nnlang against PyTorch: largest difference per tensor, relative to its largest magnitude (absolute below 1)")
    failed = False
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            worst = check(*case, binary, tmp)
        top = max(v for k, v in worst.items() if k != "largest gradient")
        failed |= top > 1e-5
        act, output, steps, features, hidden, classes, batch, bi = case
        detail = ", ".join(f"{k.split('.')[-1]} {v:.1e}" for k, v in worst.items())
        kind = "bidirectional(rnn" if bi else "rnn"
        print(f"{kind}({hidden}, {act}, output = {output})) over [{steps}, {features}], batch {batch}: max {top:.1e} ({detail})".replace("))", ")" if not bi else "))"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
