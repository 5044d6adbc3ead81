"""ModelVersions through the real operator: the examples register, `kubectl get` shows
the columns, and a second ModelVersion with the same model+version is a Duplicate with a
Warning Event while the first is unaffected; deleting the first hands the version over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cases.api_cases import model_version
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "modelversions"


def phase(cluster: Cluster, name: str, namespace: str) -> str | None:
    obj = cluster.get_json("modelversion", name, namespace)
    return ((obj or {}).get("status") or {}).get("phase")


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "-o",
        "json",
        f"--field-selector=involvedObject.name={name}",
    ).stdout
    return list(json.loads(out)["items"])


def test_examples_register_and_show_in_kubectl_get(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    names = [
        "fraud-detector-1-2-0",
        "fraud-detector-1-3-0",
        "churn-predictor-2-0-0",
        "churn-predictor-2-1-0-rc-1",
    ]
    for name in names:
        wait_for(
            lambda n=name: phase(cluster, n, namespace) == "Registered",  # type: ignore[misc]
            timeout=30,
            message=f"{name} Registered",
        )
    table = cluster.kubectl("get", "mv", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "MODEL", "VERSION", "PHASE", "ROLE", "AGE"]
    assert "churn-predictor-2-1-0-rc-1   churn-predictor   2.1.0-rc.1+build.7   Registered" in table
    listed = cluster.kubectl("get", "ferryman", "-n", namespace).stdout
    assert all(f"modelversion.ferryman.dev/{n}" in listed for n in names)
    explained = cluster.kubectl("explain", "modelversion.spec.artifact.digest").stdout
    assert "sha256 digest of the artifact" in explained
    obj = cluster.get_json("modelversion", "fraud-detector-1-3-0", namespace)
    assert obj is not None
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["conditions"][0]["type"] == "Registered"
    # Not served by any Rollout: no finalizer, so deleting never waits for the operator.
    assert "ferryman.dev/finalizer" not in obj["metadata"].get("finalizers", [])


def test_duplicate_model_version_and_handover(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(model_version(name="fraud-a"), namespace=namespace)
    wait_for(
        lambda: phase(cluster, "fraud-a", namespace) == "Registered",
        timeout=30,
        message="first Registered",
    )
    first = cluster.get_json("modelversion", "fraud-a", namespace)
    cluster.apply(model_version(name="fraud-b"), namespace=namespace)
    wait_for(
        lambda: phase(cluster, "fraud-b", namespace) == "Duplicate",
        timeout=30,
        message="second Duplicate",
    )
    dup = cluster.get_json("modelversion", "fraud-b", namespace)
    assert dup is not None
    condition = dup["status"]["conditions"][0]
    assert condition["status"] == "False" and condition["reason"] == "Duplicate"
    assert "already registered by ModelVersion fraud-a" in condition["message"]
    warning = wait_for(
        lambda: [
            e
            for e in events(cluster, namespace, "fraud-b")
            if e["type"] == "Warning" and e["reason"] == "Duplicate"
        ],
        timeout=15,
        message="Warning event",
    )
    assert "fraud-a" in warning[0]["message"]
    # The first is unaffected: same status, not rewritten.
    assert cluster.get_json("modelversion", "fraud-a", namespace)["status"] == first["status"]  # type: ignore[index]

    # Restart-safe: a fresh operator process reaches the same verdicts without rewriting.
    before = cluster.get_json("modelversion", "fraud-b", namespace)["metadata"]["resourceVersion"]  # type: ignore[index]
    operator.restart()
    cluster.apply(model_version(name="fraud-c", version="2.0.0"), namespace=namespace)
    wait_for(
        lambda: phase(cluster, "fraud-c", namespace) == "Registered",
        timeout=30,
        message="operator back",
    )
    assert (
        cluster.get_json("modelversion", "fraud-b", namespace)["metadata"]["resourceVersion"]  # type: ignore[index]
        == before
    )

    # Deleting the original hands the version to the oldest remaining claim.
    cluster.kubectl("delete", "mv", "fraud-a", "-n", namespace)
    wait_for(
        lambda: phase(cluster, "fraud-b", namespace) == "Registered",
        timeout=30,
        message="handover to fraud-b",
    )
