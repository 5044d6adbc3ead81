"""Restart safety: the operator is killed (exit without cleanup) at each named point of a
reconcile, for each strategy, and at random moments; a fresh process finishes the
rollout correctly, creates no duplicates, and a sampler reading the route and the
Deployments every 100 ms never sees weights that don't sum to 100 or weight on a backend
without enough Ready replicas."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")

STRATEGIES: dict[str, dict[str, Any]] = {
    "canary": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}},
    "bluegreen": {"blueGreen": {"previewMirrorPercent": 50, "autoPromotionSeconds": 1}},
    "shadow": {"shadow": {"mirrorPercent": 50, "duration": "2s", "then": "promote"}},
}
# The second hit of each point: inside the new rollout, past its first reconcile.
KILL_POINTS = ["after-scale-up:2", "after-route-write:2", "before-status-write:2"]


def finished(cluster: Cluster, ns: str) -> bool:
    st = r.status(cluster, ns)
    return st.get("phase") == "Healthy" and st.get("stableVersion") == "1.1.0"


def assert_no_duplicates(cluster: Cluster, ns: str) -> None:
    deployments: list[Any] = [
        d.metadata.name for d in cluster.apps.list_namespaced_deployment(ns).items
    ]
    assert sorted(deployments) in (["fraud-1-0-0", "fraud-1-1-0"], ["fraud-1-1-0"]), deployments
    routes = cluster.custom.list_namespaced_custom_object(  # type: ignore[index]
        "gateway.networking.k8s.io", "v1", ns, "httproutes"
    )["items"]
    assert [x["metadata"]["name"] for x in routes] == ["fraud"]
    assert r.http_route(cluster, ns) == {"fraud-1-1-0": 100}


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_killed_at_a_named_point_the_rollout_still_finishes(
    cluster: Cluster, namespace: str, operator_factory: Any, strategy: str, point: str
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout("1.0.0", strategy=STRATEGIES[strategy], scaleDownDelaySeconds=60),
        namespace=namespace,
    )
    first: OperatorProcess = operator_factory().start()
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy",
        timeout=60,
        message="first version stable",
    )
    first.stop()

    sampler = r.Sampler(cluster, namespace, replicas=2)
    # Retargeted while no operator runs, so every hit of the point (counted from the
    # doomed process's start, which may reconcile more than once as its watches list)
    # falls inside the new rollout; not waited live: it may reach the point first.
    r.retarget(cluster, namespace, "1.1.0")
    doomed: OperatorProcess = operator_factory(env={"FERRYMAN_TEST_KILL_AT": point})
    doomed.start(wait=False)
    assert doomed.proc is not None
    doomed.proc.wait(timeout=60)
    assert doomed.proc.returncode == 137, doomed.log_tail()
    assert f"exiting at {point.split(':')[0]}" in doomed.logs()

    operator_factory().start()
    wait_for(lambda: finished(cluster, namespace), timeout=90, message="rollout finished")
    assert sampler.stop() == []
    assert_no_duplicates(cluster, namespace)
    history = [(h["version"], h["outcome"]) for h in r.status(cluster, namespace)["history"]]
    assert history == [("1.0.0", "Promoted"), ("1.1.0", "Promoted")]


def test_killed_at_random_moments_the_rollout_still_finishes(
    cluster: Cluster, namespace: str, operator_factory: Any
) -> None:
    seed = int(os.environ.get("FERRYMAN_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"random kill seed: {seed} (FERRYMAN_TEST_SEED={seed} reproduces the schedule)")
    rng = random.Random(seed)
    steps = [
        {"setWeight": 25},
        {"pause": {"duration": "1s"}},
        {"setWeight": 50},
        {"pause": {"duration": "1s"}},
        {"setWeight": 75},
        {"pause": {"duration": "1s"}},
    ]
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout(
            "1.0.0", strategy={"canary": {"steps": steps}}, replicas=4, scaleDownDelaySeconds=60
        ),
        namespace=namespace,
    )
    op: OperatorProcess = operator_factory().start()
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy",
        timeout=60,
        message="first version stable",
    )
    sampler = r.Sampler(cluster, namespace, replicas=4)
    r.retarget(cluster, namespace, "1.1.0")
    for _ in range(4):  # bounded: four kills at most
        time.sleep(rng.uniform(0.2, 2.0))
        if finished(cluster, namespace):
            break
        op.kill()
        op.start()
    wait_for(lambda: finished(cluster, namespace), timeout=90, message="rollout finished")
    assert sampler.stop() == [], f"seed {seed}"
    assert_no_duplicates(cluster, namespace)
