#!/usr/bin/env bash
# Runs the GitOps loop test (tests/gitops: real Argo CD, a git server, the local control
# plane, Prometheus, the simulated data plane and the operator) inside a private network
# namespace that has only loopback (hack/netns.sh), because Argo CD's application
# controller binds its metrics and health ports on every interface with no host flag.
# The control plane is its own, in "${FERRYMAN_CLUSTER_DIR:-~/.cache/ferryman/cluster}-gitops",
# started and stopped by the pytest session inside the namespace (its ports are private
# to the namespace). The Argo CD binary is built first, outside the namespace (a cold
# build needs the network; a warm one costs nothing). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash hack/argocd/build.sh >/dev/null
cache=${FERRYMAN_CACHE:-$HOME/.cache/ferryman}
dir="${FERRYMAN_CLUSTER_DIR:-$cache/cluster}-gitops"
echo "run-tests: GitOps loop (tests/gitops) in a private network namespace, control plane in $dir"
exec bash hack/netns.sh env FERRYMAN_CLUSTER_DIR="$dir" \
  .venv/bin/python -m pytest -p no:xdist --durations=5 --gitops tests/gitops "$@"
