"""Every name and label value ferryman derives is valid and distinct, or the input is
refused up front: field case 09 (long versions sharing a selector), and a write the API
server refuses for a reason the CRDs cannot see (reported as ``ApplyFailed``, not retried
silently). Field case 10 (names that cannot name a Service, refused by ``kubectl apply``)
is in ``cases/api_cases.py``, run by ``test_api_validation.py``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cases.api_cases import model_version
from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")


LONG = "1.0.0-rc." + "x" * 60  # field case 09: versions of 71 characters, equal but the last


def _pods_selected(cluster: Cluster, ns: str, service: str) -> set[str]:
    svc = cluster.get_json("service", service, ns) or {}
    selector = ",".join(f"{k}={v}" for k, v in svc["spec"]["selector"].items())
    pods = cluster.core.list_namespaced_pod(ns, label_selector=selector).items
    return {p.metadata.name for p in pods}  # type: ignore[misc]


def _pods_of(cluster: Cluster, ns: str, deployment: str) -> set[str]:
    dep = cluster.get_json("deployment", deployment, ns) or {}
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    pods = cluster.core.list_namespaced_pod(ns, label_selector=selector).items
    return {
        p.metadata.name  # type: ignore[misc]
        for p in pods
        if (p.metadata.annotations or {}).get("ferryman.dev/model-version") == deployment
    }


def test_field_case_09_long_versions_get_distinct_selectors(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    a, b = LONG + ".1", LONG + ".2"
    cluster.apply(
        [model_version(name="fraud-a", version=a), model_version(name="fraud-b", version=b)],
        namespace=namespace,
    )
    cluster.apply(r.rollout(a), namespace=namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy",
        timeout=60,
        message="a stable",
    )
    r.retarget(cluster, namespace, b)
    wait_for(
        lambda: r.http_route(cluster, namespace) == {"fraud-a": 50, "fraud-b": 50},
        timeout=60,
        message="b at 50%",
    )
    pods_a = wait_for(lambda: _pods_of(cluster, namespace, "fraud-a"), timeout=30, message="a")
    pods_b = wait_for(lambda: _pods_of(cluster, namespace, "fraud-b"), timeout=30, message="b")
    assert pods_a and pods_b and not pods_a & pods_b
    assert _pods_selected(cluster, namespace, "fraud-a") == pods_a
    assert _pods_selected(cluster, namespace, "fraud-b") == pods_b
    assert _pods_selected(cluster, namespace, "fraud") == pods_a  # the stable Service
    labels = {
        cluster.get_json("service", s, namespace)["spec"]["selector"]["ferryman.dev/version"]  # type: ignore[index]
        for s in ("fraud-a", "fraud-b")
    }
    assert len(labels) == 2 and all(len(v) <= 63 for v in labels)


def _condition(cluster: Cluster, ns: str, type_: str) -> dict[str, Any] | None:
    conditions = r.status(cluster, ns).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def _events(cluster: Cluster, ns: str, reason: str) -> list[str]:
    out = cluster.kubectl(
        "get", "events", "-n", ns, f"--field-selector=reason={reason}", "-o", "json"
    ).stdout
    return [e["message"] for e in json.loads(out)["items"]]


def test_a_write_the_api_server_refuses_is_reported_not_retried_silently(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # Free-form serving fields reach the Deployment as they are: requests above limits
    # pass the CRD, and the API server refuses the Deployment (422).
    bad, good = r.versions("1.0.0", "1.0.1")
    bad["spec"]["serving"]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    cluster.apply([bad, good], namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    cond = wait_for(
        lambda: (
            (c := _condition(cluster, namespace, "ApplyFailed")) and c["status"] == "True" and c
        ),
        timeout=30,
        message="ApplyFailed",
    )
    assert "Deployment fraud-1-0-0 (HTTP 422)" in cond["message"], cond
    assert "must be less than or equal to cpu limit" in cond["message"], cond
    events = wait_for(
        lambda: _events(cluster, namespace, "ApplyFailed"), timeout=20, message="ApplyFailed event"
    )
    assert events == [cond["message"]]  # one Event, not one per retry
    assert cluster.get_json("deployment", "fraud-1-0-0", namespace) is None
    assert r.http_route(cluster, namespace) is None  # no route to a version that is not there
    # A new version fixes it (the ModelVersion spec is immutable).
    r.retarget(cluster, namespace, "1.0.1")
    wait_for(
        lambda: r.status(cluster, namespace).get("stableVersion") == "1.0.1",
        timeout=60,
        message="1.0.1 stable",
    )
    cond = _condition(cluster, namespace, "ApplyFailed")
    assert cond is not None and cond["status"] == "False"
