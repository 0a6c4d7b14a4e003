#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver when missing, for the
# browser tests of the web page (crates/cli/tests/cli/ui). Needs root
# (apt-get); otherwise it says what to install, or VOW_SKIP_BROWSER=1 skips
# those tests.
set -euo pipefail

if [[ "${VOW_SKIP_BROWSER:-}" == 1 ]]; then
  exit 0
fi
if command -v chromedriver >/dev/null && { [[ -x /usr/lib/chromium/chromium ]] || command -v chromium >/dev/null; }; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "chromium.sh: chromium and chromedriver are not installed and this is not root: install the" >&2
  echo "chromium and chromium-driver packages, or set VOW_SKIP_BROWSER=1" >&2
  exit 1
fi
echo "== installing chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
