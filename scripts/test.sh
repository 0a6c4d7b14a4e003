#!/usr/bin/env bash
# Runs Vow's whole test suite from a fresh clone: installs what the tests need
# (the wasm32-wasip2 target, a venv with componentize-py for the Python
# guests, one with schemathesis for the Golem compatibility suite,
# Chromium and chromedriver for the web page's browser tests, PostgreSQL),
# builds the guest components, then runs every test with a throwaway
# PostgreSQL server (see scripts/with-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

echo "== building the Python guest examples"
bash guest-examples/python/build.sh

echo "== installing schemathesis (the Golem compatibility suite)"
bash scripts/schemathesis.sh

echo "== installing Chromium (the browser tests of the web page)"
bash scripts/chromium.sh

echo "== running the tests (with a throwaway PostgreSQL: scripts/with-postgres.sh)"
# With vow-cli's `otlp` feature, so the OTLP export is tested too
# (crates/cli/tests/cli/telemetry.rs); one build serves every test.
bash scripts/with-postgres.sh cargo test --workspace --features vow-cli/otlp "$@"

echo "== vow-cli without its otlp feature (what --otlp-endpoint answers then)"
cargo test -p vow-cli --test cli telemetry::
