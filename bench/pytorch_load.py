"""Loads weights written by `nnlangc train examples/mnist_mlp.nn` into a PyTorch model of the
same shape and reports its MNIST test accuracy, to show the checkpoint's names and layouts
are PyTorch's. Usage: python bench/pytorch_load.py runs/Mlp/weights.safetensors
"""
import gzip
import sys

import numpy as np
import torch
from safetensors.torch import load_file

weights = load_file(sys.argv[1])
print({k: tuple(v.shape) for k, v in weights.items()})
model = torch.nn.Sequential(
    torch.nn.Linear(784, 256), torch.nn.ReLU(),
    torch.nn.Linear(256, 128), torch.nn.ReLU(),
    torch.nn.Linear(128, 10),
)
# nnlang names layers dense_0, dense_1, dense_2; torch.nn.Sequential names them 0, 2, 4.
renamed = {k.replace("dense_0", "0").replace("dense_1", "2").replace("dense_2", "4"): v for k, v in weights.items()}
model.load_state_dict(renamed, strict=True)

def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data[4 + 4 * nd:], dtype=np.uint8).reshape(dims)

x = torch.tensor(idx("examples/data/mnist/t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0, dtype=torch.float32)
y = torch.tensor(idx("examples/data/mnist/t10k-labels-idx1-ubyte.gz").astype(np.int64))
with torch.no_grad():
    acc = (model(x).argmax(1) == y).float().mean().item()
print(f"PyTorch, nnlang's weights: test accuracy {100 * acc:.2f}%")
