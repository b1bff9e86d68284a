#!/usr/bin/env bash
# Builds the playground into playground/dist, a folder any static file server serves
# (`python3 -m http.server -d playground/dist`):
#   - the nnlang-wasm crate for wasm32-unknown-unknown with SIMD128 (.cargo/config.toml),
#   - its JavaScript glue by wasm-bindgen-cli of the crate's exact wasm-bindgen version
#     (installed with cargo when missing),
#   - wasm-opt -O3 where binaryen is installed and accepts the module (else left as built),
#   - the page (www/), every example (.nn) and the data the page can train on.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
dist=$root/playground/dist
version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
if ! wasm-bindgen --version 2>/dev/null | grep -qF "$version"; then
    echo "== installing wasm-bindgen-cli $version"
    # Without its default rustls feature: the CLI downloads nothing here.
    cargo install wasm-bindgen-cli --version "$version" --no-default-features --force --quiet
fi

echo "== cargo build -p nnlang-wasm --target wasm32-unknown-unknown"
cargo build --release --locked --target wasm32-unknown-unknown -p nnlang-wasm
rm -rf "$dist"
mkdir -p "$dist/pkg" "$dist/examples" "$dist/data/sklearn"
wasm-bindgen --target web --no-typescript --out-dir "$dist/pkg" \
    "$root/target/wasm32-unknown-unknown/release/nnlang_wasm.wasm"
wasm=$dist/pkg/nnlang_wasm_bg.wasm
if command -v wasm-opt >/dev/null 2>&1; then
    if wasm-opt -O3 --all-features "$wasm" -o "$wasm.opt" 2>/dev/null; then
        mv "$wasm.opt" "$wasm"
    else
        rm -f "$wasm.opt"
        echo "(wasm-opt could not read the module: left as built)"
    fi
fi

cp www/* "$dist/"
names=()
for f in "$root"/examples/*.nn; do
    name=$(basename "$f" .nn)
    cp "$f" "$dist/examples/"
    names+=("\"$name\"")
done
(IFS=,; echo "{\"default\":\"digits_mlp\",\"names\":[${names[*]}]}") > "$dist/examples/index.json"
# The data the page trains on, at the paths the examples' data blocks name.
data=()
for f in digits-train.csv.gz digits-test.csv.gz digits.csv.gz iris.csv.gz; do
    cp "$root/examples/data/sklearn/$f" "$dist/data/sklearn/"
    data+=("\"data/sklearn/$f\"")
done
(IFS=,; echo "[${data[*]}]") > "$dist/data/index.json"

raw=$(wc -c < "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
glue=$(gzip -9 -c "$dist/pkg/nnlang_wasm.js" | wc -c)
echo "== playground/dist: nnlang_wasm_bg.wasm $raw bytes, $gz gzipped; glue $glue gzipped"
