#!/usr/bin/env bash
# Installs what the tests and the demo need from Debian's packages, only when missing:
#   prometheus  the real Prometheus server the analysis tests and the demo query
#   openssl     certificates of the local control plane
#   redis-server  Argo CD's cache in the GitOps loop test (tests/gitops/)
# Go (to build the control plane) and Python >= 3.11 are prerequisites (README.md).
# Idempotent and quiet when everything is present.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "[deps] installing Debian packages: ${need[*]}"
# Never let a package start its service (Prometheus would listen on 0.0.0.0:9090, Redis
# on 6379):
# the tests start their own on 127.0.0.1. policy-rc.d exit code 101 = "action forbidden".
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  added_policy=1
fi
trap '[ $added_policy -eq 1 ] && $sudo rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# If the package started a service anyway (no init policy honoured), stop it.
if pgrep -x prometheus >/dev/null 2>&1 && ! pgrep -af prometheus | grep -q 127.0.0.1; then
  $sudo pkill -x prometheus || true
fi
echo "[deps] done"
