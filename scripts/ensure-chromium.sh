#!/usr/bin/env bash
# Makes sure the dashboard browser test has a Chromium: `npm test` runs this (pretest), and so does
# CI. It finds one at $CHROMIUM_PATH (default /usr/bin/chromium); when there is none it installs
# Debian's chromium package with apt-get (as root, or through sudo), quietly, printing apt's output
# only when the install fails. When it can do neither it stops with a message saying what to do.
set -euo pipefail
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  echo "chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi

cannot() {
  cat >&2 <<MSG
ensure-chromium: no Chromium at $CHROMIUM, and $1.
  The dashboard test (apps/balancer/test/dashboard.e2e-spec.ts) drives a real Chromium. Either
  - run 'npm test' once as root (or with passwordless sudo) on Debian/Ubuntu, so this script can
    'apt-get install chromium', or
  - install Chromium yourself and point CHROMIUM_PATH at its binary (CHROMIUM_PATH=/path npm test).
MSG
  exit 1
}
if [ -n "${CHROMIUM_PATH:-}" ]; then cannot "CHROMIUM_PATH is set, so nothing is installed in its place"; fi
command -v apt-get >/dev/null 2>&1 || cannot "there is no apt-get on this machine"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    cannot "installing it needs root (this runs as $(id -un), without passwordless sudo)"
  fi
fi

echo "ensure-chromium: installing Debian's chromium with apt-get (once; about a minute)..."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
  cat "$log" >&2
  cannot "apt-get failed (its output is above)"
fi
"$CHROMIUM" --version
