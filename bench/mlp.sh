#!/usr/bin/env bash
# Side by side, in one run: the MLP training step of examples/mnist_mlp.nn as code generated
# by nn!, in the plan interpreter, and in PyTorch, at batch 64 and 256, on 1 and 2 threads.
#
#   PYTHON=/path/to/venv/bin/python bench/mlp.sh
#
# PyTorch is not a dependency of nnlang: install it in a virtual environment outside the
# repository (`python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

rust=$(cargo bench -q -p nnlang-macros --bench train_step 2>/dev/null | grep -E '^(generated|interpreter) ')
torch=$(OMP_NUM_THREADS=1 "$PYTHON" bench/pytorch_mlp.py 2>/dev/null | grep '^pytorch ')

rate() { grep "^$1 threads=$2 batch=$3 " | sed 's/.*samples\/s=//'; }
echo "| threads | batch | generated (nn!) | interpreter | PyTorch | generated / PyTorch |"
echo "|---|---|---|---|---|---|"
for t in 1 2; do
  for b in 64 256; do
    g=$(rate generated $t $b <<<"$rust")
    i=$(rate interpreter $t $b <<<"$rust")
    p=$(rate pytorch $t $b <<<"$torch")
    r=$(awk -v g="$g" -v p="$p" 'BEGIN { printf "%.2f", g / p }')
    echo "| $t | $b | $g | $i | $p | $r× |"
  done
done
echo
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $("$PYTHON" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null)"
