"""The Rollout's standard conditions work with the tools pipelines use: `kubectl wait
--for=condition=Available` (the stable has its Ready replicas) and
`--for=condition=Ready` (the spec's target is stable at 100%, kstatus' Current), which
stays False while a candidate waits paused and turns True once it is promoted."""

from __future__ import annotations

import subprocess

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")


def kwait(
    cluster: Cluster, ns: str, condition: str, timeout: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "wait", f"--for=condition={condition}", f"--timeout={timeout}",
        "rollout.ferryman.dev/fraud", "-n", ns, check=False, timeout=120,
    )  # fmt: skip


def test_kubectl_wait_for_available_and_ready(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    for condition in ("Available", "Ready"):
        done = kwait(cluster, namespace, condition, "90s")
        assert done.returncode == 0, done.stderr
    assert r.status(cluster, namespace)["stableVersion"] == "1.0.0"

    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Paused",
        timeout=60,
        message="candidate paused at 50%",
    )
    assert kwait(cluster, namespace, "Paused", "30s").returncode == 0
    assert kwait(cluster, namespace, "Ready=False", "30s").returncode == 0
    assert kwait(cluster, namespace, "Ready", "2s").returncode != 0  # not while paused

    r.act(cluster, namespace, "promote-full")
    done = kwait(cluster, namespace, "Ready", "90s")
    assert done.returncode == 0, done.stderr
    st = r.status(cluster, namespace)
    assert st["stableVersion"] == "1.1.0" and not st.get("candidateVersion")
    assert st["weights"]["stable"] == 100
    assert kwait(cluster, namespace, "Available", "30s").returncode == 0
