"""`kubectl ferryman` as users run it: through kubectl's plugin mechanism, against the real
API server and the real operator."""

from __future__ import annotations

import json
import subprocess

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")


def ferryman(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("ferryman", *args, check=False, timeout=60)


def test_status_promote_history_lineage_and_errors(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy", timeout=60, message="stable"
    )

    refused = ferryman(cluster, "promote", "fraud", "-n", namespace)
    assert refused.returncode == 1
    assert "promote does not apply in phase Healthy" in refused.stderr
    missing = ferryman(cluster, "status", "nope", "-n", namespace)
    assert (
        missing.returncode == 1
        and f"Rollout nope not found in namespace {namespace}" in missing.stderr
    )

    cluster.kubectl(
        "patch",
        "rollout.ferryman.dev",
        "fraud",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"target": {"version": "1.1.0"}}}),
    )
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Paused",
        timeout=60,
        message="paused at 50%",
    )
    status = ferryman(cluster, "status", "fraud", "-n", namespace)
    assert status.returncode == 0, status.stderr
    assert "Candidate: 1.1.0   weight 50%" in status.stdout and "Step:      1/2" in status.stdout

    promoted = ferryman(cluster, "promote", "fraud", "-n", namespace)
    assert promoted.returncode == 0, promoted.stderr
    assert "handled: phase" in promoted.stdout
    wait_for(
        lambda: r.status(cluster, namespace).get("stableVersion") == "1.1.0",
        timeout=60,
        message="promoted",
    )

    history = ferryman(cluster, "history", "fraud", "-n", namespace).stdout
    assert [line.split()[:2] for line in history.splitlines()[1:]] == [
        ["1.0.0", "Promoted"],
        ["1.1.0", "Promoted"],
    ]
    lineage = ferryman(cluster, "lineage", "fraud", "-n", namespace).stdout.splitlines()
    assert [line.split()[0] for line in lineage[1:]] == ["1.0.0", "1.1.0"]
    assert "stable" in lineage[2] and "Serving" in lineage[2]

    watched = ferryman(cluster, "status", "fraud", "-n", namespace, "--watch", "--timeout", "3")
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.count("Rollout ") >= 1 and "Healthy" in watched.stdout

    help_text = cluster.kubectl("ferryman", "--help").stdout
    assert "annotations with a nonce" in help_text
