#!/usr/bin/env bash
# Inference latency side by side, interleaved: the MNIST MLP and the small MNIST ConvNet at
# batch 1 and 64 on one thread, generated code and interpreter (`nnlangc run`'s path) beside
# PyTorch in inference mode; microseconds per call.
#
#   PYTHON=/path/to/venv/bin/python bench/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for model in mlp cnn; do
  echo "### $model"
  bench/side_by_side.sh latency bench/pytorch_latency.py --model "$model" --batch 1 64
  echo
done
