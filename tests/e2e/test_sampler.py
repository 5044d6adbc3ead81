"""The shared sampler (tests/harness/sampler.py) checks on every watch event, not only
every 100 ms: a route whose weights do not sum to 100 for a few milliseconds is still
caught, through the event that carried it."""

from __future__ import annotations

import time
from typing import Any

from harness.kube import Cluster
from harness.sampler import ROUTE_API, Sampler


def route(weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud"},
        "spec": {
            "rules": [
                {"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in weights.items()]}
            ]
        },
    }


def test_a_bad_route_living_milliseconds_is_caught_by_its_watch_event(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(route({"a": 50, "b": 50}), namespace=namespace)
    sampler = Sampler(cluster, namespace, replicas=0)
    time.sleep(1)  # the watches are open
    custom = cluster.custom
    for bad in ({"a": 60, "b": 30}, {"a": 50, "b": 50}):  # back to good at once
        custom.patch_namespaced_custom_object(
            *ROUTE_API, namespace, "httproutes", "fraud", route(bad)
        )
    time.sleep(1)
    violations = sampler.stop()
    assert "weights {'a': 60, 'b': 30} do not sum to 100 (watch event)" in violations, violations
    assert sampler.evaluations["event"] > 0 and sampler.evaluations["timer"] > 0


def test_good_routes_give_no_violation(cluster: Cluster, namespace: str) -> None:
    cluster.apply(route({"a": 100}), namespace=namespace)
    sampler = Sampler(cluster, namespace, replicas=0)
    time.sleep(1)
    for good in ({"a": 50, "b": 50}, {"b": 100}):
        cluster.custom.patch_namespaced_custom_object(
            *ROUTE_API, namespace, "httproutes", "fraud", route(good)
        )
    time.sleep(1)
    assert sampler.stop() == []
