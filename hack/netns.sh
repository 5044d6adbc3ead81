#!/usr/bin/env bash
# Runs a command inside a private network namespace that has only a loopback interface,
# so servers that bind every interface with no host flag (Argo CD's controller metrics,
# Argo Rollouts' and Flagger's HTTP ports) are still reachable from 127.0.0.1 alone.
# Needs root or unprivileged user namespaces (unshare -r). Usage: netns.sh CMD [ARG...]
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit 64; }
flags=(-n)
[ "$(id -u)" -eq 0 ] || flags=(-r -n)
exec unshare "${flags[@]}" -- bash -c 'ip link set lo up && exec "$@"' netns "$@"
