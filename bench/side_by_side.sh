#!/usr/bin/env bash
# One benchmark of nnlang (generated code and interpreter) beside the same model in PyTorch,
# in one run, on 1 and 2 threads, as a Markdown table of samples/s.
#
#   PYTHON=/path/to/venv/bin/python bench/side_by_side.sh BENCH PYTORCH_SCRIPT BATCH...
#
# BENCH is a bench of nnlang-macros (train_step, cnn_step, rnn_step); PyTorch is not a
# dependency of nnlang: install it in a virtual environment outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bench=$1
script=$2
shift 2

rust=$(cargo bench -q -p nnlang-macros --bench "$bench" 2>/dev/null | grep -E '^(generated|interpreter) ')
torch=$(OMP_NUM_THREADS=1 "$PYTHON" "$script" --batch "$@" 2>/dev/null | grep '^pytorch ')

rate() { grep "^$1 threads=$2 batch=$3 " | sed 's/.*samples\/s=//'; }
echo "| threads | batch | generated (nn!) | interpreter | PyTorch | generated / PyTorch |"
echo "|---|---|---|---|---|---|"
for t in 1 2; do
  for b in "$@"; do
    g=$(rate generated $t $b <<<"$rust")
    i=$(rate interpreter $t $b <<<"$rust")
    p=$(rate pytorch $t $b <<<"$torch")
    r=$(awk -v g="$g" -v p="$p" 'BEGIN { printf "%.2f", g / p }')
    echo "| $t | $b | $g | $i | $p | $r× |"
  done
done
echo
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $("$PYTHON" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null)"
