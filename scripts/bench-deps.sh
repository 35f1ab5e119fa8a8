#!/usr/bin/env bash
# Installs what `make bench` needs beyond the tests' packages: Debian's wrk (the load generator).
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "bench-deps: need root to install: wrk" >&2; exit 1; }
    sudo=sudo
fi
echo "bench-deps: installing wrk"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends wrk
