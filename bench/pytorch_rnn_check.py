"""nnlang's Elman `rnn`, `lstm` and `gru` against PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`
(the "activation" column of the cases names the gated ones), alone and after an `embedding` of
token ids (PyTorch's `nn.Embedding`): the same weights and batch through both,
then the outputs (softmax probabilities), the mean cross-entropy and every parameter's
gradient compared. With `output = sequence` the classifier works at every step and the loss
is the mean over the steps; "packed" cases give every sequence its own length (PyTorch's
`pack_padded_sequence`, nnlang's `[seq <= n, f]` with the lengths beside the batch) and
count only the steps inside each sequence. PyTorch is not a dependency of nnlang: run this
from a virtual environment that has torch, numpy and safetensors.

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
    # (activation, output, steps, features, hidden, classes, batch, bidirectional, packed)
    ("tanh", "last", 7, 5, 16, 4, 9, False, False),
    ("relu", "last", 7, 5, 16, 4, 9, False, False),
    ("tanh", "sequence", 6, 3, 8, 5, 11, False, False),
    ("relu", "sequence", 28, 28, 32, 10, 16, False, False),
    ("tanh", "last", 7, 5, 16, 4, 9, True, False),
    ("tanh", "sequence", 6, 3, 8, 5, 11, True, False),
    ("relu", "last", 12, 4, 10, 3, 8, True, False),
    ("tanh", "last", 9, 5, 16, 4, 10, False, True),
    ("relu", "sequence", 9, 5, 16, 4, 10, False, True),
    ("tanh", "last", 11, 4, 12, 3, 12, True, True),
    ("tanh", "sequence", 11, 4, 12, 3, 12, True, True),
    # The gated recurrences: alone, both ways, packed, every step and the last.
    ("lstm", "last", 7, 5, 16, 4, 9, False, False),
    ("lstm", "sequence", 28, 28, 32, 10, 16, False, False),
    ("gru", "last", 7, 5, 16, 4, 9, False, False),
    ("gru", "sequence", 6, 3, 8, 5, 11, False, False),
    ("lstm", "last", 9, 5, 16, 4, 10, False, True),
    ("gru", "sequence", 9, 5, 16, 4, 10, False, True),
    ("lstm", "sequence", 11, 4, 12, 3, 12, True, True),
    ("gru", "last", 11, 4, 12, 3, 12, True, True),
    ("lstm", "last", 12, 4, 10, 3, 8, True, False),
]
# Token ids through an embedding (`vocab` rows of `features`) before the recurrence: the
# table's gradient sums every use of each id, and the padding gives it none.
EMBED_CASES = [
    # (case as above, vocab)
    (("lstm", "sequence", 9, 6, 16, 5, 10, False, True), 11),
    (("gru", "last", 8, 4, 12, 3, 9, True, True), 7),
    (("tanh", "sequence", 6, 5, 8, 4, 7, False, False), 50),
]


def check(act, output, steps, features, hidden, classes, batch, bi, packed, binary, tmp, vocab=0):
    torch.manual_seed(3)
    emb = torch.nn.Embedding(vocab, features) if vocab else None
    gated = act in ("lstm", "gru")
    if gated:
        module = torch.nn.LSTM if act == "lstm" else torch.nn.GRU
        rnn = module(features, hidden, batch_first=True, bidirectional=bi)
    else:
        rnn = torch.nn.RNN(features, hidden, nonlinearity=act, batch_first=True, bidirectional=bi)
    width = 2 * hidden if bi else hidden
    fc = torch.nn.Linear(width, classes)
    with torch.no_grad():  # larger weights than the default, so that relu units stay alive
        for p in list(rnn.parameters()) + list(fc.parameters()):
            p.uniform_(-0.5, 0.5)
    x = torch.rand(batch, steps, features) * 2 - 1
    # Every length from 1 to `steps` (packed), or all `steps`.
    lengths = torch.tensor([1 + (i * 5) % steps for i in range(batch)]) if packed else torch.full((batch,), steps)
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    if emb is not None:
        ids = torch.randint(0, vocab, (batch, steps)) * mask  # padding is id 0, never read
        x_file = ids.numpy().astype(np.float32)
        x = emb(ids)
    else:
        x = x * mask[:, :, None]  # padding is zero in both
        x_file = x.numpy().reshape(batch, steps, features)
    per_step = output == "sequence"
    y = torch.randint(0, classes, (batch, steps) if per_step else (batch,))
    layer = "bidirectional_0" if bi else (f"{act}_0" if gated else "rnn_0")
    names = {f"{layer}.{n}": p for n, p in rnn.named_parameters()}
    names.update({"dense_0.weight": fc.weight, "dense_0.bias": fc.bias})
    if emb is not None:
        names["embedding_0.weight"] = emb.weight
    save_file({k: v.detach().contiguous() for k, v in names.items()}, os.path.join(tmp, "w.safetensors"))
    np.save(os.path.join(tmp, "x.npy"), x_file)
    np.save(os.path.join(tmp, "y.npy"), y.numpy().astype(np.float32))
    np.save(os.path.join(tmp, "lengths.npy"), lengths.numpy().astype(np.float32))
    layer_src = f"{act}({hidden}, output = {output})" if gated else f"rnn({hidden}, activation = {act}, output = {output})"
    if bi:
        layer_src = f"bidirectional({layer_src}, merge = concat)"
    dims = f"seq <= {steps}, {features}" if packed else f"{steps}, {features}"
    lookup = ""
    if emb is not None:
        dims = (f"seq <= {steps}" if packed else f"seq = {steps}") + f"] ids < {vocab}"
        lookup = f"embedding({vocab}, {features}) -> "
    else:
        dims += "]"
    src = f"model M {{ input x: [{dims}\n x -> {lookup}{layer_src} -> dense({classes}) -> softmax }}\n"
    with open(os.path.join(tmp, "m.nn"), "w") as f:
        f.write(src)
    args = [binary, "m.nn", "w.safetensors", "x.npy", "y.npy", "."] + (["lengths.npy"] if packed else [])
    run = subprocess.run(args, cwd=tmp, capture_output=True, text=True, check=True)
    ours_loss = float(run.stdout.split()[1])

    inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False) if packed else x
    seq, h_n = rnn(inp)
    if act == "lstm":
        h_n = h_n[0]  # (h_n, c_n)
    if packed:
        seq, _ = torch.nn.utils.rnn.pad_packed_sequence(seq, batch_first=True, total_length=steps)
    if output == "last":
        # h_n: the forward's final state, then (bidirectional) the reverse's.
        feats = torch.cat([h_n[0], h_n[1]], dim=1) if bi else h_n[-1]
        logits = fc(feats)
        loss = torch.nn.functional.cross_entropy(logits, y)
        probs = torch.softmax(logits, dim=1).detach().numpy()
    else:
        # At every step; the mean over the steps inside the sequences.
        logits = fc(seq)
        loss = torch.nn.functional.cross_entropy(logits[mask], y[mask])
        probs = torch.softmax(logits, dim=2).detach().numpy()
    loss.backward()
    ours = np.load(os.path.join(tmp, "outputs.npy"))
    if per_step:
        ours = ours.reshape(batch, steps, classes)[mask.numpy()]
        probs = probs[mask.numpy()]
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
    for case, vocab in [(c, 0) for c in CASES] + EMBED_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            worst = check(*case, binary, tmp, vocab)
        top = max(v for k, v in worst.items() if k != "largest gradient")
        failed |= top > 1e-5
        act, output, steps, features, hidden, classes, batch, bi, packed = case
        detail = ", ".join(f"{k if k.startswith('embedding') else k.split('.')[-1]} {v:.1e}" for k, v in worst.items())
        layer = f"{act}({hidden}, output = {output})" if act in ("lstm", "gru") else f"rnn({hidden}, {act}, output = {output})"
        if bi:
            layer = f"bidirectional({layer})"
        if vocab:
            layer = f"embedding({vocab}, {features}) -> {layer}"
            features = f"ids < {vocab}"
        dims = f"[seq <= {steps}, {features}] (packed, lengths 1..{steps})" if packed else f"[{steps}, {features}]"
        print(f"{layer} over {dims}, batch {batch}: max {top:.1e} ({detail})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
