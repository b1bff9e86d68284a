"""The Elman RNN of PERFORMANCE.md in PyTorch, for `bench/rnn.sh`: nn.RNN(32, 128, tanh)
over 50 steps, the last state → Linear(128, 10), softmax cross-entropy, SGD with momentum 0.9,
float32, random data; with `--cell lstm` or `--cell gru` (for `bench/gated.sh`) nn.LSTM or
nn.GRU(64, 256) instead, the sizes of issue 25.

Usage: python bench/pytorch_rnn.py [--cell rnn|lstm|gru] [--threads 1 2] [--batch 32] [--steps 60] [--runs 5]
"""
import argparse
import statistics
import time

import torch


def bench(threads, batch, steps, runs, cell="rnn"):
    torch.set_num_threads(threads)
    torch.manual_seed(7)
    if cell == "rnn":
        features, hidden = 32, 128
        rnn = torch.nn.RNN(features, hidden, nonlinearity="tanh", batch_first=True)
    else:
        features, hidden = 64, 256
        rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(features, hidden, batch_first=True)
    fc = torch.nn.Linear(hidden, 10)
    params = list(rnn.parameters()) + list(fc.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, 50, features)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=False)
        _, h_n = rnn(x)
        if cell == "lstm":
            h_n = h_n[0]
        loss_fn(fc(h_n[-1]), y).backward()
        opt.step()

    for _ in range(10):
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
    p.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="rnn")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, nargs="+", default=[32])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    print(f"# torch {torch.__version__}")
    for t in a.threads:
        for b in a.batch:
            print(f"pytorch threads={t} batch={b} samples/s={bench(t, b, a.steps, a.runs, a.cell):.0f}")


if __name__ == "__main__":
    main()
