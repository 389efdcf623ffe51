#!/bin/sh
# Installs the benchmark's peers (nginx, haproxy, wrk) with apt-get, only those missing.
# Needs root (CI and dev sessions run as root). Safe to run repeatedly.
set -e
missing=""
for p in nginx haproxy wrk; do
  if ! command -v "$p" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$p" ]; then missing="$missing $p"; fi
done
if [ -z "$missing" ]; then
  echo "ensure-peers: nginx, haproxy and wrk are installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-peers: missing:$missing and no apt-get here; install them by hand (the bench skips missing peers)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
echo "ensure-peers: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
