#!/usr/bin/env bash
# `npm run build:native` (and so `npm ci`'s prepare, `npm run build`, the demo and the Dockerfile):
# the NVML addon (node-gyp) and the fake libnvidia-ml.so.1 (make). Quiet when it works, one line;
# when a step fails, that step's full output and the command that failed. BUILD_NATIVE_VERBOSE=1
# prints everything as it goes.
set -euo pipefail
cd "$(dirname "$0")"
# node-gyp is a dev dependency; npm puts node_modules/.bin on PATH, this covers a direct call too.
PATH="$PWD/../../node_modules/.bin:$PATH"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() {
  if [ "${BUILD_NATIVE_VERBOSE:-}" = 1 ]; then
    "$@"
  elif ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build-native: '$*' failed in libs/nvml (its full output is above)" >&2
    exit 1
  fi
}
start=$(date +%s)
step node-gyp rebuild
step make -s -C fake
echo "native: libs/nvml/build/Release/nvml.node and libs/nvml/fake/build/libnvidia-ml.so.1 ($(($(date +%s) - start)) s)"
