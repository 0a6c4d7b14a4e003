#!/usr/bin/env bash
# A three-node Vow cluster on this machine, over a throwaway PostgreSQL:
#
#     bash scripts/cluster.sh
#
# Builds `vow` and the example guests, starts PostgreSQL
# (scripts/with-postgres.sh), then nodes a, b and c on 127.0.0.1:9881,
# 9882 and 9883 with the approval example, and waits until Ctrl-C, which
# stops everything and removes the database. docs/cluster.md walks through
# it: start workers through different nodes, park them, kill the owner of
# one and watch the others take it over, complete it through any node,
# drain a node.
#
# VOW_LEASE_TTL (seconds, default 5) sets how long a node's run lasts
# without renewal: a killed node's workers are taken over after it;
# VOW_CLUSTER_DIR keeps the nodes' logs somewhere other than a temporary
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${VOW_TEST_DATABASE_URL:-}" ]]; then
  exec bash scripts/with-postgres.sh bash "$0" "$@"
fi

ttl="${VOW_LEASE_TTL:-5}"
logs="${VOW_CLUSTER_DIR:-$(mktemp -d /tmp/vow-cluster.XXXXXX)}"
mkdir -p "$logs"

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi
echo "== building vow and the example guests" >&2
cargo build -q -p vow-cli
cargo build -q --release --target wasm32-wasip2 \
  --manifest-path guest-examples/rust/Cargo.toml --target-dir target/guests
vow="$PWD/target/debug/vow"
guest="$PWD/target/guests/wasm32-wasip2/release/approval.wasm"

# A database of its own for the cluster.
db="vow_cluster_$$"
psql_url="$VOW_TEST_DATABASE_URL"
"$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql" -q "$psql_url" \
  -c "CREATE DATABASE $db" >/dev/null
url="${psql_url%/*}/$db"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

port=9881
for node in a b c; do
  "$vow" serve --node-id "$node" --database-url "$url" --addr "127.0.0.1:$port" \
    --lease-ttl "$ttl" --link-keys "$logs/link-keys" --component "$guest" \
    >"$logs/$node.out" 2>"$logs/$node.log" </dev/null &
  pids+=("$!")
  for _ in $(seq 600); do
    grep -q "listening on" "$logs/$node.out" && break
    sleep 0.1
  done
  port=$((port + 1))
done
# Every node compiles the component; the first adds it.
for _ in $(seq 600); do
  [[ $(grep -l " serves (epoch" "$logs"/*.log 2>/dev/null | wc -l) -eq 3 ]] && break
  sleep 0.1
done

cat <<EOF

Three nodes over PostgreSQL ($url), lease ${ttl} s:
  a  http://127.0.0.1:9881
  b  http://127.0.0.1:9882
  c  http://127.0.0.1:9883
Their logs: $logs/{a,b,c}.log

  $vow node list --server http://127.0.0.1:9882

docs/cluster.md goes on from here. Ctrl-C stops the cluster.
EOF
"$vow" node list --server http://127.0.0.1:9882 || true
wait
