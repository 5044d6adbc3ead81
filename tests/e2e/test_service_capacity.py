"""Plain-Service canaries (weight = replica ratio): the Ready pods behind the live
Service never fall below ``replicas`` because of an operator write, whatever happens
mid-canary (DESIGN.md §2), checked by a watch-based sampler on every Pod and Service
event and at least every 100 ms."""

from __future__ import annotations

from typing import Any

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")
REPLICAS = 4


def deployments(cluster: Cluster, ns: str) -> dict[str, tuple[int, int]]:
    return r.available(cluster, ns)


def start_at_half(cluster: Cluster, ns: str, *versions: str) -> r.ServiceCapacitySampler:
    """Stable 1.0.0 at 4 Ready replicas, then 1.1.0 at 50% (2 + 2), paused."""
    cluster.apply(r.versions("1.0.0", "1.1.0", *versions), namespace=ns)
    cluster.apply(
        r.rollout(
            "1.0.0",
            routing=r.SERVICE,
            replicas=REPLICAS,
            strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
            progressDeadlineSeconds=120,
        ),
        namespace=ns,
    )
    wait_for(
        lambda: (
            r.status(cluster, ns).get("phase") == "Healthy"
            and deployments(cluster, ns).get("fraud-1-0-0") == (REPLICAS, REPLICAS)
        ),
        timeout=60,
        message="1.0.0 Healthy with 4 Ready",
    )
    sampler = r.ServiceCapacitySampler(cluster, ns, replicas=REPLICAS)
    r.retarget(cluster, ns, "1.1.0")
    at_half(cluster, ns, "1.1.0")
    return sampler


def at_half(cluster: Cluster, ns: str, version: str) -> None:
    name = "fraud-" + version.replace(".", "-")
    wait_for(
        lambda: (
            r.status(cluster, ns).get("phase") == "Paused"
            and r.status(cluster, ns).get("weights", {}).get("candidate") == 50
            and deployments(cluster, ns).get("fraud-1-0-0") == (2, 2)
            and deployments(cluster, ns).get(name) == (2, 2)
        ),
        timeout=60,
        message=f"{version} at 50% (2 + 2 Ready)",
    )


def warnings(cluster: Cluster, ns: str, reason: str) -> str:
    out: str = cluster.kubectl(
        "get", "events", "-n", ns, f"--field-selector=reason={reason},type=Warning"
    ).stdout
    return out


@pytest.mark.kwok
def test_unready_candidate_on_a_plain_service_gives_capacity_back_to_the_stable(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # Field case 05-service-canary-unready-candidate.
    sampler = start_at_half(cluster, namespace)
    sampler.fault(2)
    r.set_unready(cluster, namespace, "1.1.0")
    wait_for(
        lambda: deployments(cluster, namespace).get("fraud-1-0-0") == (REPLICAS, REPLICAS),
        timeout=30,
        message="stable scaled back to 4 Ready",
    )
    st: dict[str, Any] = wait_for(
        lambda: (s := r.status(cluster, namespace)).get("weights", {}).get("candidate") == 0 and s,
        timeout=20,
        message="real ratio 0% reported",
    )
    assert st["phase"] == "Paused" and st["canaryWeight"] == 50  # nominal step weight kept
    wait_for(
        lambda: "withdrawn" in warnings(cluster, namespace, "CandidateUnready"),
        timeout=20,
        message="CandidateUnready Warning event",
    )
    # The candidate's pods come back: they carry their 50% again, the stable shrinks.
    r.set_unready(cluster, namespace, "1.1.0", unready=False)
    at_half(cluster, namespace, "1.1.0")
    assert sampler.stop() == [], sampler.samples
    assert sampler.evaluations["event"] > 0 and sampler.evaluations["timer"] > 0


def test_new_target_then_abort_of_a_plain_service_canary_never_drops_capacity(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    sampler = start_at_half(cluster, namespace, "1.2.0")
    # A new target at 50%: 1.1.0 stays behind the Service until 1.0.0 is back at 4 Ready.
    r.retarget(cluster, namespace, "1.2.0")
    wait_for(
        lambda: "fraud-1-1-0" not in deployments(cluster, namespace),
        timeout=30,
        message="1.1.0 removed",
    )
    at_half(cluster, namespace, "1.2.0")
    # Abort at 50%: the same for 1.2.0.
    r.act(cluster, namespace, "abort")
    wait_for(
        lambda: (
            r.status(cluster, namespace).get("phase") == "Aborted"
            and set(deployments(cluster, namespace)) == {"fraud-1-0-0"}
        ),
        timeout=30,
        message="aborted, candidate removed",
    )
    svc = cluster.get_json("service", "fraud", namespace) or {}
    assert svc["spec"]["selector"]["ferryman.dev/version"] == "1.0.0"
    assert r.status(cluster, namespace)["weights"] == {
        "stable": 100,
        "candidate": 0,
        "mirrorPercent": 0,
    }
    assert sampler.stop() == [], sampler.samples
