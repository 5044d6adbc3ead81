"""Deleting a Rollout (``spec.deletionPolicy``) and its namespace, against the real API
server, garbage collector and namespace controller, with the operator running.

- KeepStable (the default): deleting a Rollout mid-canary leaves the stable version
  serving: the route 100% to it and Ready throughout (the restart-safety sampler, every
  100 ms, and a watch of every route state), its objects orphaned and labelled, the
  candidate garbage-collected; a Rollout of the same name (a forced replace, a prune and
  re-create) adopts them and canaries from that stable, the route never gone.
- Delete (everything goes with the Rollout, as before the policy existed: the garbage
  collector's work) is a unit test's (tests/unit/test_orphans.py).
- Then the namespace, deleted mid-rollout, goes (the Rollout's finalizer released) with
  no traceback in the operator's log for the 403s of a terminating namespace, each
  logged at INFO or DEBUG and none retried in a loop.
One test (one rollout to the middle, about 15 s, serves both).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.kwok]
ORPHANED = "ferryman.dev/orphaned"
STABLE, CANDIDATE = "fraud-1-0-0", "fraud-1-1-0"


def paused_mid_canary(cluster: Cluster, ns: str, **extra: Any) -> None:
    """Stable 1.0.0 and candidate 1.1.0 with 50% of the traffic, paused."""
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0", **extra), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: (
            r.status(cluster, ns).get("phase") == "Paused"
            and r.http_route(cluster, ns) == {STABLE: 50, CANDIDATE: 50}
        ),
        timeout=60,
        message="paused at 50%",
    )


def metadata(cluster: Cluster, kind: str, name: str, ns: str) -> dict[str, Any] | None:
    found = cluster.get_json(kind, name, ns)
    return None if found is None else dict(found["metadata"])


def in_background(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``fn`` in a thread; the returned function joins it and re-raises its error."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> Any:
        thread.join()
        if "error" in result:
            raise result["error"]
        return result.get("value")

    return join


@pytest.mark.slow
def test_keep_stable_keeps_serving_through_delete_and_recreate_then_the_namespace_goes(
    local_cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster, ns = local_cluster, namespace
    paused_mid_canary(cluster, ns)
    sampler = r.Sampler(cluster, ns, replicas=2)
    # Every state of the route from now until the new Rollout took it: never gone, never
    # without weight on the stable version.
    route_held = in_background(
        lambda: r.holds(
            cluster,
            ns,
            15,
            httproute=lambda o: (r.route_weights(o) or {}).get(STABLE, 0) > 0,
        )
    )
    time.sleep(1)
    old_uid = metadata(cluster, "rollout.ferryman.dev", "fraud", ns)["uid"]  # type: ignore[index]
    cluster.kubectl("delete", "rollout.ferryman.dev", "fraud", "-n", ns, "--timeout=60s")

    # What serves the stable version stays, orphaned; the candidate is collected.
    assert r.http_route(cluster, ns) == {STABLE: 100}
    for kind, name in (
        ("deployment", STABLE),
        ("service", STABLE),
        ("poddisruptionbudget", STABLE),
        ("service", "fraud"),
        ("httproute", "fraud"),
    ):
        meta = metadata(cluster, kind, name, ns)
        assert meta is not None, (kind, name)
        assert meta["labels"][ORPHANED] == "true", (kind, name)
        assert not meta.get("ownerReferences"), (kind, name)
    wait_for(
        lambda: metadata(cluster, "deployment", CANDIDATE, ns) is None,
        timeout=60,
        message="candidate garbage-collected",
    )
    assert r.available(cluster, ns)[STABLE] == (2, 2)

    # A Rollout of the same name (a forced replace) adopts them and starts from 1.0.0.
    cluster.apply(r.rollout("1.1.0"), namespace=ns)
    wait_for(
        lambda: (
            r.status(cluster, ns).get("phase") == "Paused"
            and r.http_route(cluster, ns) == {STABLE: 50, CANDIDATE: 50}
        ),
        timeout=60,
        message="the new Rollout canaries 1.1.0 from the adopted stable",
    )
    assert r.status(cluster, ns)["stableVersion"] == "1.0.0"
    new_uid = metadata(cluster, "rollout.ferryman.dev", "fraud", ns)["uid"]  # type: ignore[index]
    assert new_uid != old_uid
    for kind, name in (("deployment", STABLE), ("httproute", "fraud"), ("service", "fraud")):
        meta = metadata(cluster, kind, name, ns)
        assert meta is not None and ORPHANED not in (meta.get("labels") or {}), (kind, name)
        assert [o["uid"] for o in meta["ownerReferences"]] == [new_uid], (kind, name)
    route_held()
    assert sampler.stop() == []

    # The namespace deleted mid-rollout (the new Rollout paused at 50%), right after a
    # promote, while the operator is writing (creates included).
    r.act(cluster, ns, "promote")
    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(
        lambda: cluster.get_json("namespace", ns, None) is None,
        timeout=90,
        message=f"namespace {ns} gone",
    )
    logs = operator.logs()
    assert "Traceback" not in logs, logs[-4000:]
    refusals = [line for line in logs.splitlines() if "being terminated" in line]
    # Expected refusals: at INFO (or DEBUG), none retried in a loop.
    loud = [line for line in refusals if "[INFO" not in line and "[DEBUG" not in line]
    assert loud == [], "\n".join(loud)
    assert len(refusals) <= 10, "\n".join(refusals)
