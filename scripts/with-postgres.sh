#!/usr/bin/env bash
# Runs a command with VOW_TEST_DATABASE_URL pointing at a throwaway
# PostgreSQL server, started for the run and removed afterwards:
#
#     bash scripts/with-postgres.sh cargo test --workspace
#
# A URL already in VOW_TEST_DATABASE_URL is used as it is, and
# VOW_SKIP_POSTGRES=1 runs the command without one (the PostgreSQL tests
# then skip themselves, saying so). PostgreSQL comes from the Debian
# package, installed when missing and the script runs as root; the server
# runs as the `postgres` user (initdb refuses root) in a temporary data
# directory, on a free port of 127.0.0.1, with trust authentication.
set -euo pipefail

if [[ "${VOW_SKIP_POSTGRES:-}" == 1 || -n "${VOW_TEST_DATABASE_URL:-}" ]]; then
  exec "$@"
fi

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
pg_bin="$(bindir)"
if [[ -z "$pg_bin" || ! -x "$pg_bin/initdb" ]]; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "with-postgres.sh: PostgreSQL is not installed and this is not root: install the" >&2
    echo "postgresql package, or set VOW_TEST_DATABASE_URL, or VOW_SKIP_POSTGRES=1" >&2
    exit 1
  fi
  echo "== installing PostgreSQL" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  pg_bin="$(bindir)"
fi

dir="$(mktemp -d /tmp/vow-pg.XXXXXX)"
as_postgres() {
  if [[ "$(id -u)" == 0 ]]; then
    (cd "$dir" && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}
if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$dir"; fi
chmod 700 "$dir"
stop() {
  as_postgres "$pg_bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_postgres "$pg_bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
  >"$dir/initdb.log" || { cat "$dir/initdb.log" >&2; exit 1; }
# Tests kill Vow, not the database: the server's own fsync can go, unless
# VOW_PG_FSYNC=on asks for a server that syncs like a production one (for
# benchmarks).
sync_options="-c fsync=off -c full_page_writes=off"
if [[ "${VOW_PG_FSYNC:-}" == on ]]; then sync_options=""; fi
as_postgres "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
  "-p $port -k $dir -c listen_addresses=127.0.0.1 $sync_options -c max_connections=300" \
  >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
echo "== PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2

export VOW_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
"$@"
