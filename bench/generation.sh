#!/usr/bin/env bash
# Issue 26's batch-1 generation latency: `nnlangc sample` with the Shakespeare transformer
# against the same model and weights in PyTorch eager (bench/pytorch_generation.py), one
# thread each, interleaved, on a full window of 128 characters. nnlangc's time per character
# is the difference between generating 1,000 and 200 characters, over 800 (load and compile
# cancel out).
#
#   PYTHON=/path/to/venv/bin/python bench/generation.sh RUN_DIR   # RUN_DIR: a trained run
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?usage: bench/generation.sh RUN_DIR}
NN=examples/shakespeare_transformer.nn
BIN=target/release/nnlangc
PY=${PYTHON:-python3}
cargo build --release --quiet --bin nnlangc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" export "$NN" --pytorch --weights "$RUN/weights.safetensors" --output "$tmp/model.py" >/dev/null
# A prime longer than the window: every character generated reads a full window.
PRIME=$(head -c 20000 <(zcat examples/data/shakespeare/tragedies.txt.gz) | tail -c 200)
now() { date +%s.%N; }
for rep in 1 2 3; do
    t0=$(now); "$BIN" sample "$NN" --weights "$RUN/weights.safetensors" --prime "$PRIME" --length 200 --temperature 0.7 --seed "$rep" >/dev/null
    t1=$(now); "$BIN" sample "$NN" --weights "$RUN/weights.safetensors" --prime "$PRIME" --length 1000 --temperature 0.7 --seed "$rep" >/dev/null
    t2=$(now)
    echo "nnlangc sample $(echo "($t2 - $t1 - ($t1 - $t0)) * 1000 / 800" | bc -l | xargs printf '%.3f') ms per character (run $rep)"
    "$PY" bench/pytorch_generation.py "$tmp/model.py" "$RUN/weights.safetensors" --chars 400 --reps 1
done
