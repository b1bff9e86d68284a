"""The transformer of issue 26 in PyTorch, for `bench/transformer.sh`: character ids (65) →
nn.Embedding(65, 128) + learned positions (128) → 4 pre-norm blocks (x + MHA(LN(x)), causal,
4 heads; x + MLP(LN(x)), 128 → 512 → GELU → 128) → LN → Linear(128, 65) at every step,
cross-entropy over every step, AdamW(lr 1e-3, weight decay 0.01); 128 steps; float32,
random ids; no dropout. Eager, and with `--compile` also `torch.compile`.

Usage: python bench/pytorch_transformer.py [--threads 1 2] [--batch 32] [--steps 10] [--runs 5] [--compile]
"""
import argparse
import statistics
import time

import torch
from torch import nn

V, D, H, L, T = 65, 128, 4, 4, 128


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, H, batch_first=True)
        self.ln2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.pos = nn.Embedding(T, D)
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.ln = nn.LayerNorm(D)
        self.head = nn.Linear(D, V)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

    def forward(self, ids):
        x = self.emb(ids) + self.pos.weight[: ids.shape[1]]
        for b in self.blocks:
            x = b(x, self.mask)
        return self.head(self.ln(x))


def bench(threads, batch, steps, runs, compiled):
    torch.set_num_threads(threads)
    torch.manual_seed(7)
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randint(0, V, (batch, T))
    y = torch.randint(0, V, (batch, T))
    fwd = torch.compile(net) if compiled else net

    def step():
        opt.zero_grad(set_to_none=False)
        loss_fn(fwd(x).reshape(-1, V), y.reshape(-1)).backward()
        opt.step()

    for _ in range(3 if not compiled else 5):
        step()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, nargs="+", default=[32])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    print(f"# torch {torch.__version__}")
    for t in a.threads:
        for b in a.batch:
            r = bench(t, b, a.steps, a.runs, False)
            print(f"pytorch threads={t} batch={b} samples/s={r:.1f}")
            if a.compile:
                r = bench(t, b, a.steps, a.runs, True)
                print(f"torch.compile threads={t} batch={b} samples/s={r:.1f}")


if __name__ == "__main__":
    main()
