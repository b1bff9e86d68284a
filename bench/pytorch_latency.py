"""Inference latency in PyTorch, for `bench/latency.sh`: one forward pass of the MNIST MLP
(784-256-128-10, ReLU, softmax), the small MNIST ConvNet or `examples/convnet.nn` (six 3×3
convolutions of 32 filters on 32×32×3, three max pools, 512-256-10) at the given batch sizes
on one thread, in `torch.inference_mode()` with the model in `eval()`; microseconds per call.

Usage: python bench/pytorch_latency.py [--model mlp|cnn|convnet] [--batch 1 64] [--runs 5]
"""
import argparse
import statistics
import time

import torch


def model_of(name):
    if name == "convnet":
        layers, depth = [], 3
        for _ in range(3):
            for _ in range(2):
                layers += [torch.nn.Conv2d(depth, 32, 3, padding=1), torch.nn.ReLU()]
                depth = 32
            layers.append(torch.nn.MaxPool2d(2, 2))
        layers += [torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10),
                   torch.nn.Softmax(dim=-1)]
        return torch.nn.Sequential(*layers), (3, 32, 32)
    if name == "cnn":
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
            torch.nn.Softmax(dim=-1),
        ), (1, 28, 28)
    return torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10), torch.nn.Softmax(dim=-1),
    ), (784,)


def latency(name, batch, runs):
    torch.set_num_threads(1)
    torch.manual_seed(7)
    model, shape = model_of(name)
    model.eval()
    x = torch.rand(batch, *shape)
    calls = {"convnet": 2_000, "cnn": 20_000}.get(name, 200_000) // batch
    with torch.inference_mode():
        for _ in range(calls // 4 + 1):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            for _ in range(calls):
                model(x)
            times.append((time.perf_counter() - start) * 1e6 / calls)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mlp", choices=["mlp", "cnn", "convnet"])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    print(f"# torch {torch.__version__}")
    for b in a.batch:
        print(f"pytorch threads=1 batch={b} us={latency(a.model, b, a.runs):.2f}")


if __name__ == "__main__":
    main()
