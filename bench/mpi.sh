#!/usr/bin/env bash
# Training on one machine four ways, interleaved: one process on one thread, one process on
# two threads as `--split auto` shares them (`--threads 2`: products for the MLP, batches for
# the ConvNet), on two threads splitting batches (`--threads 2 --split batch`: what processes
# do), and two one-thread processes (`mpirun -n 2`). Each
# round trains every configuration for EPOCHS epochs on MNIST (`examples/mnist_mlp.nn`, and
# `examples/mnist_convnet.nn` on LIMIT examples) and reads the samples/s of its epochs and,
# for the processes, the all-reduce time per step that `nnlangc train` reports. Prints the
# median over rounds and epochs with its spread (min–max).
#
#   [REPS=3] [EPOCHS=3] [LIMIT=12000] bench/mpi.sh
#
# Needs Open MPI (docs/scaling.md) and builds `nnlangc` with `--features mpi`. Run it on a quiet
# machine: with two cores, anything else running halves the two-worker figures.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
EPOCHS=${EPOCHS:-3}
LIMIT=${LIMIT:-12000}
cargo build --release --features mpi --locked >/dev/null 2>&1 || { echo "cannot build nnlangc --features mpi" >&2; exit 1; }
bin=target/release/nnlangc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpi=(mpirun -n 2 --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
for r in $(seq "$REPS"); do
  for model in mnist_mlp mnist_convnet; do
    args=(train "examples/$model.nn" --epochs "$EPOCHS" --out "$work/run")
    [ "$model" = mnist_convnet ] && args+=(--limit "$LIMIT")
    for how in "1 thread" "2 threads" "2 threads, batch" "2 processes"; do
      case $how in
        "1 thread") "$bin" "${args[@]}" --threads 1 >"$work/out" 2>/dev/null ;;
        "2 threads") "$bin" "${args[@]}" --threads 2 >"$work/out" 2>/dev/null ;;
        "2 threads, batch") "$bin" "${args[@]}" --threads 2 --split batch >"$work/out" 2>/dev/null ;;
        "2 processes") "${mpi[@]}" "$bin" "${args[@]}" >"$work/out" 2>/dev/null ;;
      esac
      sed -n 's/.* \([0-9,]*\) samples\/s.*/\1/p' "$work/out" | tr -d , | sed "s/^/$model|$how|sps|/" >>"$work/all"
      sed -n 's/^all-reduce: [0-9]* shared steps, \([0-9.]*\) ms per step.*/\1/p' "$work/out" |
        sed "s/^/$model|$how|ms|/" >>"$work/all"
      rm -rf "$work/run"
    done
  done
done
python3 - "$work/all" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    model, how, kind, v = line.strip().split("|")
    rows.setdefault((model, how, kind), []).append(float(v))
def fmt(vals, digits):
    m = statistics.median(vals)
    return f"{m:,.{digits}f} ({min(vals):,.{digits}f}–{max(vals):,.{digits}f})"
print("| model | how | samples/s, median (min–max) | vs 1 thread | all-reduce ms/step |")
print("|---|---|---|---|---|")
for model in ["mnist_mlp", "mnist_convnet"]:
    base = statistics.median(rows.get((model, "1 thread", "sps"), [float("nan")]))
    for how in ["1 thread", "2 threads", "2 threads, batch", "2 processes"]:
        sps = rows.get((model, how, "sps"))
        if not sps:
            continue
        ms = rows.get((model, how, "ms"))
        print(f"| {model} | {how} | {fmt(sps, 0)} | {statistics.median(sps) / base:.2f}× | {fmt(ms, 3) if ms else '—'} |")
EOF
echo
echo "$REPS interleaved rounds of $EPOCHS epochs; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(mpirun --version | head -1)"
