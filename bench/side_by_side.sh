#!/usr/bin/env bash
# One benchmark of nnlang (generated code and interpreter) beside the same model in PyTorch,
# interleaved: REPS rounds (default 5), each one timed run of every configuration in nnlang's
# bench binary and then one in PyTorch's script, so that both see the same machine state.
# Prints a Markdown table of the medians with their spread (min–max), the ratio of the
# medians, and the spread of the per-round ratios.
#
#   PYTHON=/path/to/venv/bin/python [REPS=5] bench/side_by_side.sh BENCH PYTORCH_SCRIPT ARGS...
#
# ARGS (`--batch 64 256`, `--model mlp`) go to both sides. With ONNX=FILE (an export of the
# same model), each round also times it in onnxruntime (bench/onnxruntime_latency.py).
#
# BENCH is a bench of nnlang-macros (train_step, cnn_step, rnn_step, latency); PyTorch is not
# a dependency of nnlang: install it in a virtual environment outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REPS=${REPS:-5}
bench=$1
script=$2
shift 2

bin=$(cargo bench -p nnlang-macros --bench "$bench" --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the $bench benchmark" >&2; exit 1; }
out=$(mktemp)
notes=$(mktemp)
round=$(mktemp)
trap 'rm -f "$out" "$notes" "$round"' EXIT
for r in $(seq "$REPS"); do
  NNLANG_BENCH_RUNS=1 "$bin" "$@" >"$round"
  grep -E '^(generated|interpreter) ' "$round" | sed "s/^/$r /" >>"$out"
  { grep '^note: ' "$round" || true; } | sed "s/^note: /round $r: /" >>"$notes"
  OMP_NUM_THREADS=1 "$PYTHON" "$script" --runs 1 "$@" 2>/dev/null | grep '^pytorch ' | sed "s/^/$r /" >>"$out"
  if [ -n "${ONNX:-}" ]; then
    "$PYTHON" bench/onnxruntime_latency.py "$ONNX" "$@" | grep '^onnxruntime' | sed "s/^/$r /" >>"$out"
  fi
done
python3 bench/summarize.py "$out"
# What the bench says besides its figures (the FMA peak, GFLOP/s), round by round.
if [ -s "$notes" ]; then echo; sed 's/^/    /' "$notes"; fi
echo
echo "$REPS interleaved rounds; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $("$PYTHON" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null)"
