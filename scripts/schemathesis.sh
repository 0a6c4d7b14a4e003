#!/usr/bin/env bash
# Installs schemathesis (PyPI), pinned below, into a virtualenv at
# `.venv-schemathesis` in the repository root, for the Golem compatibility
# suite (crates/cli/tests/cli/golem.rs), which drives `vow serve` with Golem
# 1.1's own OpenAPI document. Needs `python3` with the venv module and access
# to PyPI the first time; later runs only check the stamp.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-schemathesis"
python="${PYTHON:-python3}"
stamp="$venv/.schemathesis-$SCHEMATHESIS_VERSION"

if [[ -f "$stamp" && -x "$venv/bin/schemathesis" ]]; then
    exit 0
fi
if [[ ! -x "$venv/bin/python" ]]; then
    echo "schemathesis.sh: creating a virtualenv in $venv" >&2
    "$python" -m venv "$venv"
fi
echo "schemathesis.sh: installing schemathesis==$SCHEMATHESIS_VERSION" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "schemathesis==$SCHEMATHESIS_VERSION" </dev/null
rm -f "$venv"/.schemathesis-*
touch "$stamp"
