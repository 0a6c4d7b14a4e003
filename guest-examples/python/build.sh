#!/usr/bin/env bash
# Builds the Python guest examples into WebAssembly components.
#
#     guest-examples/python/build.sh            # every example
#     guest-examples/python/build.sh seed       # only the named ones
#
# Each example is a folder here with `app.py` and `wit/<name>.wit` (world
# `vow-examples:<name>/<name>`). The WIT exists once: componentize-py reads the
# repository's `wit/` (package `vow:host`, with golem:api and the rest in its
# `deps`), then `lib/vow-promises.wit` (the world `vow-python:promises/dispatch`
# that examples using `lib/vow_promises.py` include), then the example's world
# file. Each example's `wit/deps` is a symlink to the repository's `wit/deps`
# (for WIT tools that open the folder), never a copy. The component goes to
# `target/guests/python/<name>.wasm` and is rebuilt only when a source (or this
# script) is newer than it.
#
# componentize-py comes from PyPI, pinned below, into a virtualenv at `.venv` in
# the repository root, created on first use; cloudpickle, which goes into the
# components, is installed beside it in `.venv/guest-packages`. Needs python3
# (3.10 or newer) with the venv module. Safe to run concurrently: builds take a
# lock.
set -euo pipefail

# The componentize-py release the examples are written for: 0.25 generates the
# `--world-module` bindings and the dataclasses (`PromiseId(worker_id, ...)`)
# the examples use.
COMPONENTIZE_PY_VERSION=0.25.1
# The pure-Python pickler `lib/vow_promises.py` sends functions with, closures
# and lambdas included; it is bundled into every component.
CLOUDPICKLE_VERSION=3.1.2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"
out_dir="$root/target/guests/python"
python="${PYTHON:-python3}"

log() { printf 'build.sh: %s\n' "$*" >&2; }

mkdir -p "$out_dir"
# One build at a time: parallel test processes may all ask for the guests.
exec 9>"$out_dir/.lock"
flock 9

componentize_py="$venv/bin/componentize-py"
stamp="$venv/.componentize-py-$COMPONENTIZE_PY_VERSION"
if [[ ! -f "$stamp" || ! -x "$componentize_py" ]]; then
    if [[ ! -x "$venv/bin/python" ]]; then
        log "creating a virtualenv in $venv"
        "$python" -m venv "$venv"
    fi
    log "installing componentize-py==$COMPONENTIZE_PY_VERSION"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "componentize-py==$COMPONENTIZE_PY_VERSION" </dev/null
    rm -f "$venv"/.componentize-py-*
    touch "$stamp"
fi

# Pure-Python packages for the guests, apart from the tools: componentize-py
# bundles whatever is on the path it is given.
guest_packages="$venv/guest-packages"
packages_stamp="$guest_packages/.cloudpickle-$CLOUDPICKLE_VERSION"
if [[ ! -f "$packages_stamp" ]]; then
    log "installing cloudpickle==$CLOUDPICKLE_VERSION for the guests into $guest_packages"
    rm -rf "$guest_packages"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps --target "$guest_packages" "cloudpickle==$CLOUDPICKLE_VERSION" </dev/null
    touch "$packages_stamp"
fi

if [[ $# -gt 0 ]]; then
    examples=("$@")
else
    examples=()
    for dir in "$here"/*/; do
        [[ -f "$dir/app.py" ]] && examples+=("$(basename "$dir")")
    done
fi

for name in "${examples[@]}"; do
    src="$here/$name"
    out="$out_dir/$name.wasm"
    if [[ ! -f "$src/app.py" || ! -f "$src/wit/$name.wit" ]]; then
        log "no example $name: expected $src/app.py and $src/wit/$name.wit"
        exit 1
    fi
    # Up to date when nothing it is built from is newer: its sources, the
    # shared module, the repository's WIT, this script and the installed tools.
    if [[ -f "$out" ]] && [[ -z "$(find -L "$src" "$here/lib" "$root/wit" \
        "${BASH_SOURCE[0]}" "$stamp" "$packages_stamp" -newer "$out" \
        \( -name '*.py' -o -name '*.wit' -o -name 'build.sh' \
        -o -name '.componentize-py-*' -o -name '.cloudpickle-*' \) -print -quit)" ]]; then
        continue
    fi
    log "building $name"
    start=$SECONDS
    # componentize-py generates the `py_example` bindings internally, so the
    # example folders hold no generated code. Every WIT path after the first
    # resolves against the packages read before it, and the world is named in
    # full because several packages have worlds. Write-then-rename keeps a
    # concurrent reader from seeing half a component.
    (cd "$src" && "$componentize_py" -d "$root/wit" -d "$here/lib/vow-promises.wit" \
        -d "wit/$name.wit" -w "vow-examples:$name/$name" --world-module py_example \
        componentize app -p . -p "$here/lib" -p "$guest_packages" -o "$out.tmp" </dev/null)
    mv -f "$out.tmp" "$out"
    log "built $out ($(stat -c %s "$out") bytes, $((SECONDS - start)) s)"
done
