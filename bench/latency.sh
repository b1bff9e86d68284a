#!/usr/bin/env bash
# Inference latency side by side, interleaved: the MNIST MLP and the small MNIST ConvNet at
# batch 1 and 64 on one thread, generated code and interpreter (`nnlangc run`'s path) beside
# PyTorch in inference mode; microseconds per call.
#
# With onnxruntime and onnx installed beside PyTorch, an onnxruntime column too: each model
# trained briefly (weights of the right shapes; the time does not depend on them), exported
# with `nnlangc export --onnx` and timed from Python, with Python's own call into onnxruntime
# (an Identity model of the same input) measured beside it and taken off in the last column.
#
#   PYTHON=/path/to/venv/bin/python bench/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ort=""
if "$PY" -c 'import onnxruntime, onnx' 2>/dev/null; then
  cargo build --release --quiet --bin nnlangc
  ort=yes
fi
for model in mlp cnn; do
  echo "### $model"
  onnx=""
  if [ -n "$ort" ]; then
    file=$([ "$model" = mlp ] && echo examples/mnist_mlp.nn || echo bench/small_cnn.nn)
    target/release/nnlangc train "$file" --limit 512 --epochs 1 --quiet --out "$tmp/$model" >/dev/null
    target/release/nnlangc export "$file" --onnx --weights "$tmp/$model/weights.safetensors" --output "$tmp/$model.onnx" >/dev/null
    onnx="$tmp/$model.onnx"
  fi
  ONNX="$onnx" bench/side_by_side.sh latency bench/pytorch_latency.py --model "$model" --batch 1 64
  echo
done
