#!/usr/bin/env bash
# End-to-end training of ConvNets, `nnlangc train` beside the same model and recipe in
# PyTorch (bench/pytorch_convnets.py), interleaved: REPS rounds (default 3), each one run of
# every model at 1 and 2 threads on each side. The figure is the training loop's samples/s
# (validation not counted, on both sides), the median over rounds and epochs.
#
#   cifar    examples/convnet.nn (the notes' pattern, CIFAR-shaped 32×32×3, width 32; SGD,
#            L2, max-norm, weight average), on synthetic colour images (no colour set ships)
#   fashion  examples/fashion_convnet.nn on Fashion-MNIST (3×3 convs, max pooling, dropout)
#   varied   bench/convnets/varied.nn on Fashion-MNIST (5×5 and 3×3 convs, max and average
#            pooling, a channel maxout, a maxout layer, dropout, Adam, batch 128)
#   bn       bench/convnets/bn.nn on Fashion-MNIST (examples/fashion_bn.nn without augmentation:
#            batch norms, global average pooling, AdamW, warm-up + cosine, label smoothing)
#   mobilenet bench/convnets/mobilenet.nn on the synthetic colour images (depthwise 3×3 and
#            pointwise 1×1 convs with batch norms, strided depthwise, global pooling, AdamW)
#   resnet   bench/convnets/resnet.nn on Fashion-MNIST (examples/resnet.nn without augmentation:
#            residual blocks, a projected shortcut, batch norms, AdamW, warm-up + cosine)
#
#   PYTHON=/path/to/venv/bin/python [REPS=3] [EPOCHS=2] bench/convnets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REPS=${REPS:-3}
EPOCHS=${EPOCHS:-2}
cargo build --release --locked >/dev/null 2>&1
bin=$PWD/target/release/nnlangc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Synthetic CIFAR-shaped images: 6,400 of 32×32×3 bytes, 10 classes, as IDX.
"$PYTHON" - "$work" <<'EOF'
import gzip, struct, sys
import numpy as np
rng = np.random.default_rng(7)
n = 6400
x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, size=n, dtype=np.uint8)
with gzip.open(sys.argv[1] + "/cifar-images.gz", "wb") as f:
    f.write(struct.pack(">BBBB", 0, 0, 8, 4) + struct.pack(">IIII", n, 32, 32, 3) + x.tobytes())
with gzip.open(sys.argv[1] + "/cifar-labels.gz", "wb") as f:
    f.write(struct.pack(">BBBB", 0, 0, 8, 1) + struct.pack(">I", n) + y.tobytes())
EOF
sed -e "s|\"data/cifar/train-images.gz\"|\"$work/cifar-images.gz\"|" -e "s|\"data/cifar/train-labels.gz\"|\"$work/cifar-labels.gz\"|" \
    -e '/data\/cifar\/test-images/d' examples/convnet.nn >"$work/cifar.nn"
sed -e "s|\"data/cifar/train-images.gz\"|\"$work/cifar-images.gz\"|" -e "s|\"data/cifar/train-labels.gz\"|\"$work/cifar-labels.gz\"|" \
    bench/convnets/mobilenet.nn >"$work/mobilenet.nn"
fashion=$PWD/examples/data/fashion-mnist
declare -A file=([cifar]="$work/cifar.nn" [fashion]=examples/fashion_convnet.nn [varied]=bench/convnets/varied.nn
                 [bn]=bench/convnets/bn.nn [mobilenet]="$work/mobilenet.nn" [resnet]=bench/convnets/resnet.nn)
declare -A limit=([cifar]=3200 [fashion]=12000 [varied]=8000 [bn]=8000 [mobilenet]=3200 [resnet]=4000)
declare -A data=([cifar]="--data $work --images cifar-images.gz --labels cifar-labels.gz"
                 [fashion]="--data $fashion --images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz"
                 [varied]="--data $fashion --images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz"
                 [bn]="--data $fashion --images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz"
                 [mobilenet]="--data $work --images cifar-images.gz --labels cifar-labels.gz"
                 [resnet]="--data $fashion --images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz")
MODELS=${MODELS:-cifar fashion varied bn mobilenet resnet}
for r in $(seq "$REPS"); do
  for m in $MODELS; do
    for t in 1 2; do
      "$bin" train "${file[$m]}" --epochs "$EPOCHS" --limit "${limit[$m]}" --threads "$t" --out "$work/run" 2>/dev/null |
        sed -n 's/^epoch *\([0-9]*\)\/.* \([0-9,]*\) samples\/s.*/\1 \2/p' | tr -d , |
        while read -r e sps; do echo "nnlang|$m|$t|$sps"; done >>"$work/all"
      rm -rf "$work/run"
      # shellcheck disable=SC2086
      OMP_NUM_THREADS=$t "$PYTHON" bench/pytorch_convnets.py --model "$m" ${data[$m]} --threads "$t" \
          --epochs "$EPOCHS" --limit "${limit[$m]}" 2>/dev/null |
        sed -n 's/.*samples\/s=\([0-9]*\).*/\1/p' | while read -r sps; do echo "pytorch|$m|$t|$sps"; done >>"$work/all"
    done
  done
done
python3 - "$work/all" <<'EOF'
import statistics, sys
v = {}
for line in open(sys.argv[1]):
    side, m, t, sps = line.strip().split("|")
    v.setdefault((side, m, t), []).append(float(sps))
f = lambda xs: f"{statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"
print("| model | threads | nnlangc train | PyTorch | nnlang / PyTorch |")
print("|---|---|---|---|---|")
for m in ["cifar", "fashion", "varied", "bn", "mobilenet", "resnet"]:
    for t in ["1", "2"]:
        a, b = v.get(("nnlang", m, t)), v.get(("pytorch", m, t))
        if a and b:
            print(f"| {m} | {t} | {f(a)} | {f(b)} | {statistics.median(a) / statistics.median(b):.2f}× |")
EOF
echo
echo "$REPS interleaved rounds of $EPOCHS epochs; samples/s of the training loop; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $("$PYTHON" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null)"
