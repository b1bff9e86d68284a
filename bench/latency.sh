#!/usr/bin/env bash
# Inference latency side by side, interleaved: the MNIST MLP, the small MNIST ConvNet and the
# notes' CIFAR-shaped ConvNet (examples/convnet.nn) at batch 1 and 64 on one thread, generated
# code and interpreter (`nnlangc run`'s path) beside PyTorch in inference mode; microseconds
# per call.
#
# With onnxruntime and onnx installed beside PyTorch, an onnxruntime column too: each model
# trained briefly (weights of the right shapes; the time does not depend on them), exported
# with `nnlangc export --onnx` and timed from Python, with Python's own call into onnxruntime
# (an Identity model of the same input) measured beside it and taken off in the last column.
# No colour image set ships: examples/convnet.nn is trained on 512 random 32×32×3 images.
#
#   PYTHON=/path/to/venv/bin/python [MODELS="mlp cnn convnet"] bench/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ort=""
if "$PY" -c 'import onnxruntime, onnx' 2>/dev/null; then
  cargo build --release --quiet --bin nnlangc
  ort=yes
  "$PY" - "$tmp" <<'EOF'
import gzip, struct, sys
import numpy as np
rng = np.random.default_rng(7)
x = rng.integers(0, 256, size=(512, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, size=512, dtype=np.uint8)
with gzip.open(sys.argv[1] + "/cifar-images.gz", "wb") as f:
    f.write(struct.pack(">BBBB", 0, 0, 8, 4) + struct.pack(">IIII", 512, 32, 32, 3) + x.tobytes())
with gzip.open(sys.argv[1] + "/cifar-labels.gz", "wb") as f:
    f.write(struct.pack(">BBBB", 0, 0, 8, 1) + struct.pack(">I", 512) + y.tobytes())
EOF
  sed -e "s|\"data/cifar/train-images.gz\"|\"$tmp/cifar-images.gz\"|" -e "s|\"data/cifar/train-labels.gz\"|\"$tmp/cifar-labels.gz\"|" \
      -e '/data\/cifar\/test-images/d' examples/convnet.nn >"$tmp/convnet.nn"
fi
for model in ${MODELS:-mlp cnn convnet}; do
  echo "### $model"
  onnx=""
  if [ -n "$ort" ]; then
    case $model in
      mlp) file=examples/mnist_mlp.nn ;;
      cnn) file=bench/small_cnn.nn ;;
      *) file=$tmp/convnet.nn ;;
    esac
    target/release/nnlangc train "$file" --limit 512 --epochs 1 --quiet --out "$tmp/$model" >/dev/null
    target/release/nnlangc export "$file" --onnx --weights "$tmp/$model/weights.safetensors" --output "$tmp/$model.onnx" >/dev/null
    onnx="$tmp/$model.onnx"
  fi
  ONNX="$onnx" bench/side_by_side.sh latency bench/pytorch_latency.py --model "$model" --batch 1 64
  echo
done
