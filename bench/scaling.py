#!/usr/bin/env python3
"""The cost model of docs/scaling.md, with this machine's step times.

For every shipped example that trains on bundled data: its parameter count (`nnlangc check
--json`), its batch, and the time of one training step on one thread here (one epoch of
`nnlangc train` on LIMIT examples; the samples/s it reports). Then, for N machines joined by a
link of bandwidth B, a ring all-reduce of the gradient takes about

    t_allreduce = 2 (N - 1) / N * gradient bytes / B

per step, plus 2 (N - 1) messages' latency (assumed: 25 µs over 10 Gbit/s Ethernet and TCP,
3 µs over a 100 Gbit/s RDMA fabric), while each machine computes its share of the batch. A
batch is cut into at most batch/16 shares (fewer rows per share cost more than they save, as
with --threads), so P = min(N, batch/16) machines compute: a step takes t_step / P +
t_allreduce, and N machines train t_step / (t_step / P + t_allreduce) times as fast as one.

    python3 bench/scaling.py [--limit 4000] [--nnlangc target/release/nnlangc]

Prints a Markdown table. Run it on a quiet machine.
"""

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def params(nnlangc, path):
    out = subprocess.run([nnlangc, "check", "--json", str(path)], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    d = d if isinstance(d, list) else [d]
    return sum(layer["params"] for layer in d[0]["layers"])


def step_seconds(nnlangc, path, limit):
    """(batch, seconds per step) from one epoch on `limit` examples, on one thread."""
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(
            [nnlangc, "train", str(path), "--epochs", "1", "--limit", str(limit), "--threads", "1", "--out", out],
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        return None
    sps = re.search(r"([\d,]+) samples/s", run.stdout)
    batch = re.search(r"batch (\d+)", run.stdout)
    if not sps or not batch:
        return None
    b = int(batch.group(1))
    return b, b / float(sps.group(1).replace(",", ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--nnlangc", default=str(ROOT / "target/release/nnlangc"))
    a = ap.parse_args()
    links = [("10 Gbit/s", 10e9 / 8, 25e-6), ("100 Gbit/s", 100e9 / 8, 3e-6)]
    print("| example | parameters | gradient | batch | step, 1 thread | link | all-reduce, N = 2 | N = 8 | speed-up N = 2 | N = 4 | N = 8 | N = 16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted((ROOT / "examples").glob("*.nn")):
        if "\ndata " not in "\n" + path.read_text():
            continue
        timed = step_seconds(a.nnlangc, path, a.limit)
        if timed is None:
            continue
        batch, t = timed
        p = params(a.nnlangc, path)
        grad = 4 * p
        for i, (name, bw, lat) in enumerate(links):
            ar = lambda n: 2 * (n - 1) / n * grad / bw + 2 * (n - 1) * lat
            speed = lambda n: t / (t / min(n, max(batch // 16, 1)) + ar(n))
            head = f"| {path.stem} | {p:,} | {grad / 1e6:.2f} MB | {batch} | {1e3 * t:.2f} ms" if i == 0 else "| | | | |"
            print(
                f"{head} | {name} | {1e3 * ar(2):.3f} ms | {1e3 * ar(8):.3f} ms | "
                + " | ".join(f"{speed(n):.1f}×" for n in (2, 4, 8, 16))
                + " |"
            )


if __name__ == "__main__":
    main()
