"""The MLP training step of examples/mnist_mlp.nn in PyTorch, for comparison with
`cargo bench -p nnlang --bench train_step`: 784-256-128-10, ReLU, softmax cross-entropy,
SGD with Nesterov momentum 0.9 and L2 1e-4 (as weight decay), float32, random data.

Usage: python bench/pytorch_mlp.py [--threads 1 2] [--batch 64 256] [--steps 300] [--runs 5]
Prints one line per (threads, batch): the median samples/s over the runs.
"""
import argparse
import statistics
import time

import torch


def bench(threads, batch, steps, runs):
    torch.set_num_threads(threads)
    torch.manual_seed(7)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, 784)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(50):
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
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    print(f"# torch {torch.__version__}")
    for t in a.threads:
        for b in a.batch:
            print(f"pytorch threads={t} batch={b} samples/s={bench(t, b, a.steps, a.runs):.0f}")


if __name__ == "__main__":
    main()
