"""The small MNIST ConvNet of PERFORMANCE.md in PyTorch, for `bench/cnn.sh`:
conv3x3x16 p1 → relu → maxpool2 → conv3x3x32 p1 → relu → maxpool2 → fc128 → relu → fc10,
softmax cross-entropy, SGD with Nesterov momentum 0.9, float32, random data.

Usage: python bench/pytorch_cnn.py [--threads 1 2] [--batch 64] [--steps 60] [--runs 5]
"""
import argparse
import statistics
import time

import torch


def bench(threads, batch, steps, runs):
    torch.set_num_threads(threads)
    torch.manual_seed(7)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=False)
        loss_fn(model(x), y).backward()
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
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, nargs="+", default=[64])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    print(f"# torch {torch.__version__}")
    for t in a.threads:
        for b in a.batch:
            print(f"pytorch threads={t} batch={b} samples/s={bench(t, b, a.steps, a.runs):.0f}")


if __name__ == "__main__":
    main()
