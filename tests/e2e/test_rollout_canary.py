"""Canary over Gateway API through the real operator: the first version goes straight to
stable; a new target moves 10% -> pause 5s -> 50% -> pause until promote -> 100%; the
HTTPRoute is sampled every 100 ms throughout and never carries weights that don't sum
to 100."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest

from cases.api_cases import model_version
from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")


def canary_rollout(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": "fraud",
            "target": {"version": version},
            "replicas": 2,
            "trafficRouting": {
                "gatewayAPI": {
                    "parentRefs": [{"name": "ml-gateway"}],
                    "hostnames": ["fraud.acme.example"],
                }
            },
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": 10},
                        {"pause": {"duration": "5s"}},
                        {"setWeight": 50},
                        {"pause": {}},
                    ]
                }
            },
            "scaleDownDelaySeconds": 5,
            "progressDeadlineSeconds": 60,
        },
    }


def route_weights(cluster: Cluster, namespace: str) -> dict[str, int] | None:
    try:
        route: Any = cluster.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "fraud"
        )
    except Exception:
        return None
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


class RouteSampler:
    """Reads the HTTPRoute every 100 ms in the background (bounded by time)."""

    def __init__(self, cluster: Cluster, namespace: str, limit_s: float = 180) -> None:
        self.samples: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(cluster, namespace, limit_s), daemon=True
        )
        self._thread.start()

    def _run(self, cluster: Cluster, namespace: str, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            w = route_weights(cluster, namespace)
            if w is not None and (not self.samples or self.samples[-1] != w):
                self.samples.append(w)
            time.sleep(0.1)

    def stop(self) -> list[dict[str, int]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples


def status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    obj = cluster.get_json("rollout", "fraud", namespace) or {}
    return dict(obj.get("status") or {})


def timestamp(value: str) -> float:
    """Seconds since the epoch of a timestamp the operator wrote in status."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def promote(cluster: Cluster, namespace: str) -> None:
    """The user's way: the kubectl plugin, which sends the action with a nonce."""
    cluster.kubectl("ferryman", "promote", "fraud", "-n", namespace)


def test_first_rollout_then_canary_over_gateway_api(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(
        [
            model_version(name="fraud-1-0-0", version="1.0.0"),
            model_version(name="fraud-1-1-0", version="1.1.0"),
        ],
        namespace=namespace,
    )
    cluster.apply(canary_rollout("1.0.0"), namespace=namespace)

    # First rollout: straight to stable at 100%, no steps.
    wait_for(
        lambda: status(cluster, namespace).get("phase") == "Healthy",
        timeout=60,
        message="first rollout Healthy",
    )
    st = status(cluster, namespace)
    assert st["stableVersion"] == "1.0.0" and st.get("candidateVersion") is None
    assert route_weights(cluster, namespace) == {"fraud-1-0-0": 100}
    assert [h["outcome"] for h in st["history"]] == ["Promoted"]
    mv = cluster.get_json("modelversion", "fraud-1-0-0", namespace) or {}
    assert mv["status"]["role"] == "stable" and mv["status"]["phase"] == "Serving"

    sampler = RouteSampler(cluster, namespace)
    cluster.apply(canary_rollout("1.1.0"), namespace=namespace)
    wait_for(
        lambda: status(cluster, namespace).get("currentStep") == 1,
        timeout=60,
        message="step 1 (pause 5s) reached",
    )
    assert route_weights(cluster, namespace) == {"fraud-1-0-0": 90, "fraud-1-1-0": 10}
    paused_since = timestamp(status(cluster, namespace)["pause"]["since"])
    wait_for(
        lambda: status(cluster, namespace).get("currentStep") == 3,
        timeout=60,
        message="step 3 (pause until promote) reached",
    )
    st = status(cluster, namespace)
    # The 5 s pause held, by the operator's own clock: the step after it started (the
    # operator's stepStartedAt) at least 5 s after the pause began (its pause.since).
    assert timestamp(st["stepStartedAt"]) - paused_since >= 5, (paused_since, st)
    assert st["phase"] == "Paused" and st["pause"]["reason"] == "Step"
    assert st["weights"] == {"stable": 50, "candidate": 50, "mirrorPercent": 0}
    assert route_weights(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50}
    table = cluster.kubectl("get", "mro", "-n", namespace).stdout
    assert "1.0.0" in table and "1.1.0" in table and "Paused" in table
    # An indefinite pause stays paused.
    r.holds(cluster, namespace, 2, rollout=lambda o: o["status"]["phase"] == "Paused")

    promote(cluster, namespace)
    wait_for(
        lambda: status(cluster, namespace).get("stableVersion") == "1.1.0",
        timeout=60,
        message="promoted",
    )
    assert route_weights(cluster, namespace) == {"fraud-1-1-0": 100}
    st = status(cluster, namespace)
    assert st["phase"] == "Healthy" and st["previousStableVersion"] == "1.0.0"
    assert [h["outcome"] for h in st["history"]] == ["Promoted", "Promoted"]
    # The previous stable stays warm for scaleDownDelaySeconds, then its Deployment goes.
    assert cluster.get_json("deployment", "fraud-1-0-0", namespace) is not None
    wait_for(
        lambda: cluster.get_json("deployment", "fraud-1-0-0", namespace) is None,
        timeout=30,
        message="old stable scaled down",
    )
    samples = sampler.stop()
    assert all(sum(s.values()) == 100 for s in samples), samples
    candidate_weights: list[int] = []
    for sample in samples:
        w = sample.get("fraud-1-1-0", 0)
        if not candidate_weights or candidate_weights[-1] != w:
            candidate_weights.append(w)
    assert candidate_weights == [0, 10, 50, 100], samples
    roles = {
        n: (cluster.get_json("modelversion", n, namespace) or {})["status"]
        for n in ("fraud-1-0-0", "fraud-1-1-0")
    }
    assert roles["fraud-1-1-0"]["role"] == "stable" and roles["fraud-1-1-0"]["phase"] == "Serving"
    assert roles["fraud-1-0-0"]["role"] == "none" and roles["fraud-1-0-0"]["phase"] == "Retired"
