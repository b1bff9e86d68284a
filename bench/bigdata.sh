#!/usr/bin/env bash
# Training from a data set larger than memory would allow: MNIST's 60,000 training images
# tiled to 1,369,600 rows of 784 f32 values — a 4.0 GiB `.npy` (4.3 GB of disk in a
# temporary directory) — and the MNIST MLP trained on it for one epoch. Reports peak resident
# memory (`/usr/bin/time`) and samples/s, beside the same model on the bundled MNIST, whose
# 60,000 images are held in memory.
#
#   PYTHON=/path/to/venv/bin/python bench/bigdata.sh      # needs numpy
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
cargo build --release --locked >/dev/null 2>&1
bin=$PWD/target/release/nnlangc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" - "$work" <<'EOF'
import gzip, struct, sys
import numpy as np
def idx(p):
    with gzip.open(p) as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
x = idx("examples/data/mnist/train-images-idx3-ubyte.gz").reshape(60000, 784)
y = idx("examples/data/mnist/train-labels-idx1-ubyte.gz")
rows = 1_369_600
xs = np.lib.format.open_memmap(sys.argv[1] + "/x.npy", mode="w+", dtype=np.float32, shape=(rows, 784))
ys = np.empty(rows, dtype=np.float32)
for s in range(0, rows, 60000):
    n = min(60000, rows - s)
    xs[s:s + n] = x[:n].astype(np.float32) / 255.0
    ys[s:s + n] = y[:n]
xs.flush()
np.save(sys.argv[1] + "/y.npy", ys)
EOF
sed -e 's/^    train = idx.*$/    train = npy("x.npy", "y.npy")/' -e '/^    test  = idx/d' -e '/^    scale = /d' \
    -e 's/^    epochs    = 10/    epochs    = 1/' -e 's/^    validate  = 10%/    validate  = 2%/' \
    examples/mnist_mlp.nn >"$work/big.nn"
echo "x.npy: $(du -h "$work/x.npy" | cut -f1)"
for run in "big" "mnist"; do
  if [ "$run" = big ]; then
    (cd "$work" && /usr/bin/time -f '%M %e' "$bin" train big.nn --out run >out 2>time) || { cat "$work/out" "$work/time"; exit 1; }
  else
    /usr/bin/time -f '%M %e' "$bin" train examples/mnist_mlp.nn --epochs 1 --out "$work/run" >"$work/out" 2>"$work/time"
  fi
  read -r rss secs < <(tail -1 "$work/time")
  sps=$(sed -n 's/.* \([0-9,]*\) samples\/s.*/\1/p' "$work/out" | head -1)
  rows=$(sed -n 's/^training Mlp on \([0-9]*\) examples.*/\1/p' "$work/out")
  echo "$run: $rows training examples, $sps samples/s, peak RSS $((rss / 1024)) MB, $secs s wall"
  rm -rf "$work/run"
done
