#!/usr/bin/env bash
# Runs the NVML conformance suite against the REAL driver on a GPU machine (and the fake, as always).
# Usage: scripts/gpu-conformance.sh [path/to/libnvidia-ml.so.1]
# Without an argument the dynamic loader finds libnvidia-ml.so.1 as the agent would.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -e /dev/nvidiactl ]] && ! ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1'; then
  echo "gpu-conformance: no NVIDIA driver on this machine (no /dev/nvidiactl, no libnvidia-ml.so.1)" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L || true

[[ -d node_modules ]] || npm ci
npm run build:native

export NVML_CONFORMANCE_REAL=1
if [[ $# -gt 0 ]]; then export NVML_LIBRARY_PATH="$1"; fi
npx jest --runInBand libs/nvml/test/nvml.conformance.e2e-spec.ts --verbose
