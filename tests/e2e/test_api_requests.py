"""What a whole canary rollout costs in API requests (issue 12 §2): counts, not timings.

One Rollout over Gateway API (replicas 1, steps [setWeight 50, pause 2s], no analysis)
from creation to Healthy on 1.0.0, then retargeted to 1.1.0 until Healthy with the old
version gone. The operator runs as the chart's ServiceAccount, so the local control
plane's audit log (hack/cluster/localcluster.py AUDIT_POLICY) records each of its
requests; the test counts those in the test's namespace by verb and resource, prints
them and fails when the server-side applies of the objects ferryman serves with
(Services, PodDisruptionBudgets, Deployments, HTTPRoutes) exceed ``BOUND``: a reconcile
that re-applied every object again would cost several times more; or when their GETs
exceed ``GETS``: with ferryman's objects read from kopf's indexes, a reconcile reads
them only when its decision moves weight or removes capacity (and an entry MAX_AGE old),
so their count follows the rollout's steps more than the number of reconciles, which
depends on timing (docs/api-requests.md).
"""

from __future__ import annotations

import collections
import datetime as dt
import time

import pytest

from e2e import rollouts as r
from harness import rbac
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")

# Applies of Services, budgets, Deployments and HTTPRoutes for the whole scenario (two
# rollouts, one of them with two steps). Measured after the no-op-write skip: 12 (before:
# 111, every object on every reconcile).
BOUND = 20
# GETs of the same objects: 103 when every reconcile read every object, 29 with the
# indexes (docs/api-requests.md).
GETS = 50
# kopf's own patches of the Rollout: its finalizer only (before issue 12's NoDiffBase, a
# last-handled-configuration annotation at creation and at each retarget too: 3, each
# racing the status write into a 409).
KOPF_ROLLOUT_PATCHES = 1
APPLIED = ("services", "poddisruptionbudgets", "deployments", "httproutes")
STRATEGY = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]}}


def _healthy_on(cluster: Cluster, ns: str, version: str) -> bool:
    st = r.status(cluster, ns)
    return (
        st.get("phase") == "Healthy"
        and st.get("stableVersion") == version
        and st.get("candidateVersion") is None
        and not st.get("scaleDownAt")
    )


def _count(ns: str, user: str, since: dt.datetime) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for e in rbac.read_audit(rbac.audit_log(), user=user, since=since):
        ref = e.get("objectRef") or {}
        if ref.get("namespace") != ns or not ref.get("resource"):
            continue
        resource = ref["resource"] + ("/" + ref["subresource"] if ref.get("subresource") else "")
        counts[f"{e['verb']} {resource}"] += 1
    return counts


@pytest.mark.audit_log
def test_a_canary_rollout_costs_a_bounded_number_of_requests(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    user = f"system:serviceaccount:{rbac.OPERATOR_NAMESPACE}:{rbac.RELEASE}"
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    since = rbac.now()
    cluster.apply(
        r.rollout("1.0.0", strategy=STRATEGY, replicas=1, scaleDownDelaySeconds=0),
        namespace=namespace,
    )
    wait_for(lambda: _healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="1.0.0")
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(lambda: _healthy_on(cluster, namespace, "1.1.0"), timeout=90, message="1.1.0")
    wait_for(
        lambda: list(r.available(cluster, namespace)) == ["fraud-1-1-0"],
        timeout=30,
        message="only 1.1.0 is deployed",
    )
    # The audit log is written asynchronously: read it until two reads agree.
    counts = _count(namespace, user, since)
    for _ in range(20):
        time.sleep(0.5)
        again = _count(namespace, user, since)
        if again == counts:
            break
        counts = again
    for key, n in sorted(counts.items()):
        print(f"  {n:4d}  {key}")
    others = sum(n for key, n in counts.items() if key.split()[0] not in ("watch", "list"))
    applies = sum(n for key, n in counts.items() if key.split() in (["patch", a] for a in APPLIED))
    gets = sum(n for key, n in counts.items() if key.split() in (["get", a] for a in APPLIED))
    print(
        f"requests other than watch/list: {others}; applies: {applies} (bound {BOUND}); "
        f"GETs of those objects: {gets} (bound {GETS})"
    )
    assert applies <= BOUND, f"{applies} applies for one canary rollout (bound {BOUND}): {counts}"
    assert gets <= GETS, f"{gets} GETs for one canary rollout (bound {GETS}): {counts}"
    kopf = counts["patch rollouts"]
    assert kopf <= KOPF_ROLLOUT_PATCHES, f"{kopf} patches of the Rollout's metadata: {counts}"
