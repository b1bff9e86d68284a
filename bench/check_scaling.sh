#!/usr/bin/env bash
# How `nnlangc check` scales with the size of a model: time and peak memory for chains of
# 10k to 100k layers (dense + relu pairs, through the training-plan memory report), and the
# peak memory of models whose numbers are huge but whose size is small.
#
#   bench/check_scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release --bin nnlangc
bin=target/release/nnlangc
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

echo "| layers | check (s) | peak RSS (MiB) | emit --rust (s) |"
echo "|---|---|---|---|"
for n in 10000 20000 40000 80000 100000; do
  printf 'model M { input x: [16]\n x -> [dense(16) -> relu] * %d -> dense(2) -> softmax }\n' $((n / 2)) > "$dir/m.nn"
  t=$( { /usr/bin/time -f "%e %M" "$bin" check "$dir/m.nn" > /dev/null; } 2>&1 | tail -1)
  e=$( { /usr/bin/time -f "%e" "$bin" emit --rust "$dir/m.nn" > /dev/null; } 2>&1 | tail -1)
  read -r secs kb <<<"$t"
  echo "| $n | $secs | $((kb / 1024)) | $e |"
done

echo
echo "| model with huge numbers (4 layers) | check (s) | peak RSS (MiB) |"
echo "|---|---|---|"
for body in "dense(1000000000)" "[relu] * 1000000000" "conv(filters = 1000000, size = 3, pad = same)"; do
  case "$body" in conv*) shape="[64, 64, 3]" ;; *) shape="[4]" ;; esac
  printf 'model M { input x: %s\n x -> %s -> dense(2) }\n' "$shape" "$body" > "$dir/h.nn"
  /usr/bin/time -o "$dir/t" -f "%e %M" "$bin" check "$dir/h.nn" > /dev/null 2>&1 || true
  t=$(tail -1 "$dir/t")
  read -r secs kb <<<"$t"
  echo "| \`x -> $body -> dense(2)\` | $secs | $((kb / 1024)) |"
done
