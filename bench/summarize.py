"""Summarizes interleaved benchmark rounds (`bench/side_by_side.sh`): lines
`ROUND SIDE threads=T batch=B METRIC=VALUE` (METRIC samples/s, higher is better, or us, lower
is better), one table row per (threads, batch): each side's median and min–max, the ratio of
nnlang's generated code to PyTorch (speed-up: PyTorch's time over ours), and the min–max of
the per-round ratios."""
import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(r"^(\d+) (\w+) threads=(\d+) batch=(\d+) ([\w/]+)=([\d.]+)")


def main(path):
    runs = defaultdict(dict)  # (side, threads, batch) -> {round: value}
    metric = None
    for line in open(path):
        m = LINE.match(line.strip())
        if not m:
            continue
        rnd, side, t, b, metric, v = m.groups()
        runs[(side, int(t), int(b))][int(rnd)] = float(v)
    lower_better = metric == "us"
    keys = sorted({(t, b) for (_, t, b) in runs})
    sides = [s for s in ("generated", "interpreter", "pytorch", "onnxruntime", "onnxruntime_call") if any(k[0] == s for k in runs)]
    ort = "onnxruntime" in sides and "onnxruntime_call" in sides
    unit = "µs per call (lower is better)" if lower_better else "samples/s"
    extra = " generated / onnxruntime less its Python call (time; median, per-round range) |" if ort else ""
    print(f"| threads | batch | {' | '.join(sides)} | generated vs PyTorch (median, per-round range) |{extra}")
    print("|---|---|" + "---|" * len(sides) + "---|" + ("---|" if ort else ""))

    def cell(v):
        if not v:
            return "–"
        vals = list(v.values())
        fmt = "{:.1f}" if lower_better else "{:,.0f}"
        return f"{fmt.format(statistics.median(vals))} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"

    for t, b in keys:
        cols = [cell(runs.get((s, t, b), {})) for s in sides]
        g, p = runs.get(("generated", t, b), {}), runs.get(("pytorch", t, b), {})
        both = sorted(set(g) & set(p))
        if both:
            speed = (lambda r: p[r] / g[r]) if lower_better else (lambda r: g[r] / p[r])
            per = [speed(r) for r in both]
            med = (statistics.median(p.values()) / statistics.median(g.values())) if lower_better else (
                statistics.median(g.values()) / statistics.median(p.values()))
            ratio = f"{med:.2f}× ({min(per):.2f}–{max(per):.2f})"
        else:
            ratio = "–"
        if ort:
            o, c = runs.get(("onnxruntime", t, b), {}), runs.get(("onnxruntime_call", t, b), {})
            rounds = sorted(set(g) & set(o) & set(c))
            per = [g[r] / (o[r] - c[r]) for r in rounds if o[r] > c[r]]
            ratio += f" | {statistics.median(per):.2f}× ({min(per):.2f}–{max(per):.2f})" if per else " | –"
        print(f"| {t} | {b} | {' | '.join(cols)} | {ratio} |")
    print(f"\n(values: {unit}; median (min–max) over the rounds)")


if __name__ == "__main__":
    main(sys.argv[1])
