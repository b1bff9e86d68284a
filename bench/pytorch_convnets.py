"""The ConvNets of bench/convnets.sh in PyTorch, trained end to end as `nnlangc train` trains
them: the same layers, initialization family, optimizer, L2 (as weight decay), max-norm,
weight average, dropout, batch, validation split and epochs, on the same data (the IDX files
nnlangc reads). Prints the training loop's samples/s of each epoch (validation not counted,
as nnlangc counts it), one line per epoch:

    pytorch model=cifar threads=1 epoch=1 samples/s=812

    python bench/pytorch_convnets.py --model cifar --data DIR --threads 1 --epochs 2 --limit 3200
"""
import argparse
import gzip
import struct
import time

import numpy as np
import torch
from torch import nn


def idx(path):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class Maxout(nn.Module):
    """Maximum over groups of `pieces` consecutive channels (nnlang's maxout(pieces = p))."""

    def __init__(self, pieces):
        super().__init__()
        self.pieces = pieces

    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, c // self.pieces, self.pieces, h, w).amax(dim=2)


class MaxoutDense(nn.Module):
    """nnlang's maxout(units, pieces): `pieces` affine maps, the maximum of each unit's."""

    def __init__(self, features, units, pieces):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(features, units * pieces)

    def forward(self, x):
        return self.linear(x).view(x.shape[0], self.pieces, self.units).amax(dim=1)


def model_of(name):
    """(module, recipe, input shape [C, H, W])."""
    if name == "cifar":
        # examples/convnet.nn: [[conv3×3×32 → relu] × 2 → maxpool] × 3 → dense256 → relu → dense10
        layers, c = [], 3
        for _ in range(3):
            for _ in range(2):
                layers += [nn.Conv2d(c, 32, 3, padding=1), nn.ReLU()]
                c = 32
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Flatten(), nn.Linear(32 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 10)]
        recipe = dict(opt="sgd", lr=0.01, l2=5e-4, max_norm=3.0, ema=0.999, batch=64)
        return nn.Sequential(*layers), recipe, (3, 32, 32)
    if name == "fashion":
        # examples/fashion_convnet.nn
        m = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10),
        )
        return m, dict(opt="sgd", lr=0.05, l2=5e-4, max_norm=None, ema=None, batch=64), (1, 28, 28)
    if name == "varied":
        # bench/convnets/varied.nn
        m = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), Maxout(2), nn.AvgPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), MaxoutDense(32 * 7 * 7, 128, 2), nn.Dropout(0.5), nn.Linear(128, 10),
        )
        return m, dict(opt="adam", lr=1e-3, l2=0.0, max_norm=None, ema=None, batch=128), (1, 28, 28)
    if name == "bn":
        # bench/convnets/bn.nn (examples/fashion_bn.nn without its augmentation)
        def cbr(c_in, c_out, stride=1):
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        m = nn.Sequential(
            *cbr(1, 32), nn.MaxPool2d(2), *cbr(32, 32), *cbr(32, 32),
            *cbr(32, 64, stride=2), *cbr(64, 64), *cbr(64, 64),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )
        recipe = dict(opt="adamw", lr=3e-3, wd=0.05, smoothing=0.1, warmup=1, cosine=0.01, l2=0.0, max_norm=None,
                      ema=None, batch=128)
        return m, recipe, (1, 28, 28)
    if name == "mobilenet":
        # bench/convnets/mobilenet.nn: depthwise-separable blocks on 32×32×3
        def cbr(c_in, c_out, k, stride=1, groups=1):
            return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups), nn.BatchNorm2d(c_out),
                    nn.ReLU()]
        m = nn.Sequential(
            *cbr(3, 32, 3), *cbr(32, 32, 3, groups=32), *cbr(32, 64, 1),
            *cbr(64, 64, 3, stride=2, groups=64), *cbr(64, 128, 1),
            *cbr(128, 128, 3, groups=128), *cbr(128, 128, 1),
            *cbr(128, 128, 3, stride=2, groups=128), *cbr(128, 256, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10),
        )
        recipe = dict(opt="adamw", lr=3e-3, wd=0.05, l2=0.0, max_norm=None, ema=None, batch=64)
        return m, recipe, (3, 32, 32)
    if name == "resnet":
        # bench/convnets/resnet.nn (examples/resnet.nn without its augmentation)
        class Residual(nn.Module):
            def __init__(self, w):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                                          nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))

            def forward(self, x):
                return torch.relu(x + self.body(x))

        class Down(nn.Module):
            def __init__(self, c_in, w):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(c_in, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                                          nn.ReLU(), nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, w, 1, stride=2, bias=False), nn.BatchNorm2d(w))

            def forward(self, x):
                return torch.relu(self.shortcut(x) + self.body(x))

        m = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            Residual(32), Residual(32), Down(32, 64), Residual(64), Residual(64),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )
        recipe = dict(opt="adamw", lr=4e-3, wd=0.05, smoothing=0.1, warmup=1, cosine=0.01, l2=0.0, max_norm=None,
                      ema=None, batch=128)
        return m, recipe, (1, 28, 28)
    raise SystemExit(f"unknown model {name}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="IDX images and labels: a folder with train-images(.gz) …")
    p.add_argument("--images", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    model, r, (c, h, w) = model_of(a.model)
    x = idx(f"{a.data}/{a.images}")
    y = idx(f"{a.data}/{a.labels}")
    if a.limit:
        x, y = x[: a.limit], y[: a.limit]
    # nnlang's layout is channels last: [n, h, w, c] bytes, scaled by 1/255.
    x = torch.from_numpy(x.reshape(len(x), h, w, c).astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(y.astype(np.int64))
    n_val = int(round(0.1 * len(x)))
    perm = torch.randperm(len(x))
    xv, yv, xt, yt = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
    if r["opt"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=0.9, nesterov=True, weight_decay=r["l2"])
    elif r["opt"] == "adamw":
        # nnlang decays the weights of convolutions and dense layers, not biases or gains.
        decayed = [q for n, q in model.named_parameters() if n.endswith("weight") and q.dim() > 1]
        kept = [q for n, q in model.named_parameters() if not (n.endswith("weight") and q.dim() > 1)]
        opt = torch.optim.AdamW([{"params": decayed, "weight_decay": r["wd"]}, {"params": kept, "weight_decay": 0.0}],
                                lr=r["lr"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    avg = [q.detach().clone() for q in model.parameters()] if r["ema"] else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=r.get("smoothing", 0.0))
    batch = r["batch"]
    steps_per_epoch = (len(xt) + batch - 1) // batch
    total = steps_per_epoch * a.epochs
    warm = r.get("warmup", 0) * steps_per_epoch
    schedule = None
    if "cosine" in r:
        # nnlang's warm-up then cosine, step by step.
        def factor(step):
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(total - warm - 1, 1)
            return r["cosine"] + (1 - r["cosine"]) * 0.5 * (1 + np.cos(np.pi * min(t, 1.0)))
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for epoch in range(1, a.epochs + 1):
        model.train()
        order = torch.randperm(len(xt))
        start = time.perf_counter()
        for s in range(0, len(xt), batch):
            idx_b = order[s:s + batch]
            opt.zero_grad(set_to_none=False)
            loss_fn(model(xt[idx_b]), yt[idx_b]).backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            with torch.no_grad():
                if r["max_norm"]:
                    for wt in weights:
                        wt.copy_(torch.renorm(wt, 2, 0, r["max_norm"]))
                if avg is not None:
                    torch._foreach_lerp_(avg, list(model.parameters()), 1.0 - r["ema"])
        seconds = time.perf_counter() - start
        print(f"pytorch model={a.model} threads={a.threads} epoch={epoch} samples/s={len(xt) / seconds:.0f}", flush=True)
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(xv[s:s + 256]).argmax(1) == yv[s:s + 256]).sum()) for s in range(0, len(xv), 256))
        _ = correct / max(len(xv), 1)


if __name__ == "__main__":
    main()
