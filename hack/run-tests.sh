#!/usr/bin/env bash
# Runs pytest from the project's virtualenv with the durations report CI prints.
#
# Tests run on FERRYMAN_TEST_WORKERS pytest-xdist workers (default 2; 0 runs them in this
# process). Every e2e test has its own namespace, operator process and exporters, and
# most of an e2e test's time is spent waiting on the cluster, so two workers share one
# control plane well on 2 cores. With workers, the local control plane is started here,
# once, before pytest (each worker's session then reuses it) and stopped afterwards if
# this script started it; a selection without e2e tests (-m "not e2e") starts nothing.
#
# pytest's exit code 5 means "no tests collected". For exactly the two marker selections
# the Makefile uses (`-m "not e2e"`, `-m e2e`, nothing else) that is reported and turned
# into success; any other selection that collects nothing (a `-k` typo, a wrong path)
# fails with 5, like any other code, which stands.
#
# After a full-suite run (no arguments), a second pytest runs the tests marked
# after_suite (`--after-suite`): the RBAC-minimality check reads the API server's audit
# log since $FERRYMAN_AUDIT_SINCE, the time the suite started, so it needs every other
# test to have run first. After a partial selection it is not run (it would fail,
# reporting the grants the partial run did not use).
#
# Then, after a full-suite run on the local control plane, the GitOps loop test
# (tests/gitops, real Argo CD) runs by itself inside a private network namespace
# (hack/netns.sh: some Argo CD listeners bind every interface) with a control plane of its
# own there (work directory "$FERRYMAN_CLUSTER_DIR-gitops"), started and stopped by its
# pytest session; `GITOPS=0` leaves it out. The Argo CD binary must already be built
# (`make test` builds it first: the namespace has no network).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
workers="${FERRYMAN_TEST_WORKERS:-2}"
cluster=".venv/bin/python hack/cluster/localcluster.py"
started=0
if [ "$workers" != "0" ] && [ -z "${FERRYMAN_TEST_KUBECONFIG:-}" ] && [[ "$*" != *"not e2e"* ]]; then
  if ! $cluster status >/dev/null 2>&1; then
    $cluster up || exit 1
    started=1
  fi
fi
xdist=()
if [ "$workers" != "0" ]; then
  xdist=(-n "$workers" --dist worksteal)
fi
FERRYMAN_AUDIT_SINCE="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
export FERRYMAN_AUDIT_SINCE
.venv/bin/python -m pytest --durations=15 "${xdist[@]}" "$@"
rc=$?
if [ $# -eq 0 ] && [ -z "${FERRYMAN_TEST_KUBECONFIG:-}" ] && [ $rc -ne 5 ]; then
  .venv/bin/python -m pytest -p no:xdist --after-suite tests/e2e/test_rbac_minimal.py
  after=$?
  [ $rc -eq 0 ] && rc=$after
else
  echo "run-tests: after-suite tests (RBAC minimality, audit log) not run: partial selection or external cluster"
fi
if [ $started -eq 1 ]; then
  $cluster down
fi
if [ $# -eq 0 ] && [ -z "${FERRYMAN_TEST_KUBECONFIG:-}" ] && [ $rc -ne 5 ] && [ "${GITOPS:-1}" != "0" ]; then
  bash hack/gitops-tests.sh
  gitops=$?
  [ $rc -eq 0 ] && rc=$gitops
fi
if [ $rc -eq 5 ]; then
  if [ $# -eq 2 ] && [ "$1" = "-m" ] && { [ "$2" = "not e2e" ] || [ "$2" = "e2e" ]; }; then
    echo "run-tests: pytest collected no tests for -m \"$2\" (exit 5), treated as success"
    exit 0
  fi
  echo "run-tests: pytest collected no tests for this selection (exit 5): a typo in -k, -m or a path?" >&2
fi
exit $rc
