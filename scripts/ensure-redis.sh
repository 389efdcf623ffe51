#!/usr/bin/env bash
# Installs Debian's redis-server (the binary the Redis-mode tests start on free ports of their own),
# only when it is missing, so CI stays fast once it is there. No system service is needed or
# started: the tests run `redis-server --port N --save '' ...` themselves. Needs root (CI runs as
# root) or sudo.
set -euo pipefail
REDIS_SERVER=${REDIS_SERVER_PATH:-redis-server}
if command -v "$REDIS_SERVER" >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
  echo "redis-server present: $("$(command -v "$REDIS_SERVER" || echo /usr/bin/redis-server)" --version)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-redis: redis-server is missing and there is no apt-get here; install Redis 7 by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: redis-tools comes as a dependency; nothing else is needed.
$SUDO apt-get install -y -qq --no-install-recommends redis-server
# Debian's package enables and starts a system service where systemd runs; the tests do not use
# it. Stop it if it was started, so port 6379 is not taken behind anyone's back.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl stop redis-server || true
fi
redis-server --version
