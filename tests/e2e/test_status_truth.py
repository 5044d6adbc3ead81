"""The status says what the cluster does (issue: safety under real-world input, kind 4).

- Field case 12: a same-named HTTPRoute that belongs to someone else. The Rollout holds
  (``OwnershipConflict=True``, no weights claimed, nothing promoted or scaled down) and
  the foreign route is never touched.
- Field case 14b: every stable pod unready. ``Available=False`` (``StableNotReady``) and
  a Warning Event, and back to True when the pods recover.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e import rollouts as r
from e2e.test_cli import ferryman
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")

FOREIGN_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "fraud"},
    "spec": {
        "parentRefs": [{"name": "ml-gateway"}],
        "rules": [{"backendRefs": [{"name": "legacy", "port": 80, "weight": 100}]}],
    },
}


def condition(cluster: Cluster, ns: str, type_: str) -> dict[str, Any] | None:
    found = [c for c in r.status(cluster, ns).get("conditions") or [] if c["type"] == type_]
    return found[0] if found else None


def events(cluster: Cluster, ns: str, reason: str) -> str:
    return cluster.kubectl("get", "events", "-n", ns, f"--field-selector=reason={reason}").stdout


def test_foreign_route_holds_the_rollout_and_claims_no_traffic(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """Field case 12."""
    cluster.apply(r.versions("1.2.0", "1.3.0"), namespace=namespace)
    cluster.apply(FOREIGN_ROUTE, namespace=namespace)
    cluster.apply(r.rollout("1.2.0"), namespace=namespace)
    wait_for(
        lambda: (condition(cluster, namespace, "OwnershipConflict") or {}).get("status") == "True",
        timeout=30,
        message="OwnershipConflict=True",
    )
    r.retarget(cluster, namespace, "1.3.0")
    r.act(cluster, namespace, "promote-full")

    def held(obj: dict[str, Any]) -> bool:
        st = obj["status"]
        assert st.get("phase") == "Progressing" and st["message"].startswith("blocked:"), st
        assert not st.get("stableVersion") and not st.get("history"), st
        assert not st.get("weights"), st  # no weights claimed on a route that is not ours
        return True

    # Give a wrong promotion every chance to happen, and see every state meanwhile.
    r.holds(
        cluster,
        namespace,
        4,
        rollout=held,
        httproute=lambda o: r.route_weights(o) == {"legacy": 100},
        deployments=lambda d: d == {},
    )
    st = r.status(cluster, namespace)
    held({"status": st})
    assert (st.get("lastAction") or {}).get("result") == "Rejected"
    assert "promote-full" in events(cluster, namespace, "ActionRejected")
    # Once the foreign route is gone, the Rollout carries on by itself.
    cluster.kubectl("delete", "httproute", "fraud", "-n", namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("stableVersion") == "1.3.0",
        timeout=60,
        message="1.3.0 stable after the foreign route went",
    )
    assert r.http_route(cluster, namespace) == {"fraud-1-3-0": 100}
    assert (condition(cluster, namespace, "OwnershipConflict") or {}).get("status") == "False"


def test_route_taken_over_mid_canary_stops_promotion_and_scale_down(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """A variation: our route loses its owner reference while paused at 50%
    (someone else adopted it). Promotion is refused, the stable keeps its replicas."""
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", scaleDownDelaySeconds=0), namespace=namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy", timeout=60, message="up"
    )
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Paused", timeout=60, message="50%"
    )
    time.sleep(2)  # let the reconcile that follows the pause settle: no write in flight
    cluster.kubectl(
        "patch",
        "httproute",
        "fraud",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/metadata/ownerReferences"}]),
    )
    # Routes are not watched: the user's promote is what wakes the Rollout here.
    r.act(cluster, namespace, "promote-full")
    wait_for(
        lambda: (condition(cluster, namespace, "OwnershipConflict") or {}).get("status") == "True",
        timeout=30,
        message="OwnershipConflict=True",
    )
    r.holds(
        cluster,
        namespace,
        3,
        rollout=lambda o: (
            o["status"]["phase"] == "Paused"
            and o["status"]["stableVersion"] == "1.0.0"
            and not o["status"].get("weights")
        ),
        deployments=lambda d: d.get("fraud-1-0-0") == 2,  # not scaled down
        httproute=lambda o: r.route_weights(o) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
    )


@pytest.mark.kwok
def test_stable_without_ready_pods_is_not_available(
    local_cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """Field case 14b."""
    cluster = local_cluster
    cluster.apply(r.versions("1.2.0"), namespace=namespace)
    cluster.apply(r.rollout("1.2.0"), namespace=namespace)
    wait_for(
        lambda: (condition(cluster, namespace, "Available") or {}).get("status") == "True",
        timeout=60,
        message="Available=True",
    )
    r.set_unready(cluster, namespace, "1.2.0")
    got = wait_for(
        lambda: (
            (c := condition(cluster, namespace, "Available"))
            and c["status"] == "False"
            and "has 0 Ready replicas; 2 needed" in c["message"]
            and c
        ),
        timeout=30,
        message="Available=False with 0 of 2 Ready",
    )
    assert got["reason"] == "StableNotReady"
    # kubectl ferryman status and kubectl get show it (the Available printer column).
    view = ferryman(cluster, "status", "fraud", "-n", namespace).stdout
    assert "Available=False (StableNotReady)" in view
    # kubectl get shows it (the Available printer column).
    header, row = cluster.kubectl("get", "mro", "fraud", "-n", namespace).stdout.split("\n")[:2]
    assert row[header.index("AVAILABLE") :].split()[0] == "False"
    assert r.status(cluster, namespace)["phase"] == "Healthy"  # no new phase
    wait_for(
        lambda: "stable 1.2.0 has" in events(cluster, namespace, "StableNotReady"),
        timeout=20,
        message="StableNotReady event",
    )
    r.set_unready(cluster, namespace, "1.2.0", unready=False)
    wait_for(
        lambda: (condition(cluster, namespace, "Available") or {}).get("status") == "True",
        timeout=30,
        message="Available=True again",
    )


@pytest.mark.parametrize("routing", ["gateway", "service"])
def test_a_route_deleted_by_hand_is_written_again(
    cluster: Cluster, namespace: str, operator: OperatorProcess, routing: str
) -> None:
    """The routes ferryman writes are watched: deleting one wakes its Rollout."""
    kind = "httproute" if routing == "gateway" else "service"
    spec: dict[str, Any] = {} if routing == "gateway" else {"routing": r.SERVICE}
    cluster.apply(r.versions("1.0.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", **spec), namespace=namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy", timeout=60, message="up"
    )
    before = cluster.get_json(kind, "fraud", namespace)
    assert before is not None
    cluster.kubectl("delete", kind, "fraud", "-n", namespace)
    again = wait_for(
        lambda: (
            (o := cluster.get_json(kind, "fraud", namespace))
            and o["metadata"]["uid"] != before["metadata"]["uid"]
            and o
        ),
        timeout=30,  # a Healthy Rollout has no timer: only the watch can wake it
        message=f"{kind} fraud written again",
    )
    assert again["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ferryman"
