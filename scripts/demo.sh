#!/usr/bin/env bash
# Vow's main job on embedded defaults: builds the example guests, then serves
# them on 127.0.0.1:9881 with a worker of the approval example waiting on a
# promise. The server prints the promise id and the commands that complete it.
# Extra arguments go to `vow serve` (e.g. --addr 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

echo "== building the example guests"
cargo build --release --target wasm32-wasip2 \
  --manifest-path guest-examples/rust/Cargo.toml --target-dir target/guests

guests=target/guests/wasm32-wasip2/release
echo "== starting vow serve (Ctrl-C stops it)"
exec cargo run -p vow-cli -- serve --demo \
  --component "$guests/approval.wasm" --component "$guests/promises.wasm" "$@"
