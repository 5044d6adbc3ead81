"""Smoke tests of the local control plane: Deployments get ReplicaSets and Pods, Pods
become Ready after a visible delay, the never-ready sentinel and unready-on-demand work,
garbage collection runs, and one node holds hundreds of pods."""

from __future__ import annotations

import time

import localcluster
import pytest

from e2e.workloads import available, deployment, is_ready, pods, ready_condition
from harness.kube import Cluster, wait_for


@pytest.mark.kwok
def test_deployment_becomes_available_after_the_readiness_delay(
    local_cluster: Cluster, namespace: str
) -> None:
    cluster = local_cluster
    cluster.apply(deployment("web", 3), namespace=namespace)
    samples: list[tuple[int, int]] = []  # (pods running, available)

    def all_available() -> bool:
        running = sum(1 for p in pods(cluster, "web", namespace) if p.status.phase == "Running")
        samples.append((running, available(cluster, "web", namespace)))
        return samples[-1][1] == 3

    wait_for(all_available, timeout=60, interval=0.05, message="3 available replicas")
    # Not instant: there was a moment with running pods that were not yet available...
    assert any(running > 0 and avail < 3 for running, avail in samples), samples
    # ...and each pod's Ready transition came at least the configured delay after start.
    delay_s = localcluster.ready_delay_ms() // 1000
    for pod in pods(cluster, "web", namespace):
        ready = ready_condition(pod)
        assert ready is not None and ready.status == "True"
        assert pod.status.pod_ip and not pod.status.pod_ip.startswith("127.")
        assert (ready.last_transition_time - pod.status.start_time).total_seconds() >= delay_s


def test_deleting_a_deployment_garbage_collects_replicasets_and_pods(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(deployment("gc", 2), namespace=namespace)
    wait_for(lambda: available(cluster, "gc", namespace) == 2, timeout=60, message="2 available")
    replicasets = cluster.apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items
    assert len(replicasets) == 1
    assert replicasets[0].metadata.owner_references[0].kind == "Deployment"  # type: ignore[index]

    cluster.kubectl("delete", "deployment", "gc", "-n", namespace)
    wait_for(
        lambda: (
            not cluster.apps.list_namespaced_replica_set(namespace, label_selector="app=gc").items
            and not pods(cluster, "gc", namespace)
        ),
        timeout=60,
        message="ReplicaSet and Pods garbage-collected",
    )


@pytest.mark.kwok
def test_sentinel_image_pod_never_becomes_ready(local_cluster: Cluster, namespace: str) -> None:
    cluster = local_cluster
    cluster.apply(
        deployment("broken", 1, image="registry.example/never-ready:1"), namespace=namespace
    )
    pod = wait_for(
        lambda: next(
            (p for p in pods(cluster, "broken", namespace) if p.status.phase == "Running"), None
        ),
        timeout=30,
        message="sentinel pod running",
    )
    # Three times the readiness delay (plus jitter) and it is still not Ready.
    wait_s = 3 * localcluster.ready_delay_ms() * 1.5 / 1000
    deadline_samples = int(wait_s / 0.25)
    for _ in range(deadline_samples):
        current = cluster.core.read_namespaced_pod(pod.metadata.name, namespace)
        assert not is_ready(current), "a never-ready pod became Ready"
        time.sleep(0.25)
    assert available(cluster, "broken", namespace) == 0


@pytest.mark.kwok
def test_ready_pod_made_unready_and_back(local_cluster: Cluster, namespace: str) -> None:
    cluster = local_cluster
    cluster.apply(deployment("flaky", 2), namespace=namespace)
    wait_for(lambda: available(cluster, "flaky", namespace) == 2, timeout=60, message="2 available")
    victim = pods(cluster, "flaky", namespace)[0].metadata.name

    cluster.kubectl(
        "annotate", "pod", victim, "-n", namespace, f"{localcluster.UNREADY_ANNOTATION}=true"
    )
    wait_for(
        lambda: not is_ready(cluster.core.read_namespaced_pod(victim, namespace)),
        timeout=30,
        message="pod Ready=False",
    )
    condition = ready_condition(cluster.core.read_namespaced_pod(victim, namespace))
    assert condition.status == "False" and condition.reason == "ReadinessProbeFailed"
    wait_for(
        lambda: available(cluster, "flaky", namespace) == 1,
        timeout=30,
        message="available replicas drop to 1",
    )

    cluster.kubectl(
        "annotate", "pod", victim, "-n", namespace, f"{localcluster.UNREADY_ANNOTATION}-"
    )
    wait_for(
        lambda: available(cluster, "flaky", namespace) == 2,
        timeout=30,
        message="pod Ready again once the annotation is gone",
    )


@pytest.mark.kwok
def test_five_hundred_pods_of_one_deployment_become_ready(
    local_cluster: Cluster, namespace: str
) -> None:
    cluster = local_cluster
    cluster.apply(deployment("wide", 500), namespace=namespace)
    wait_for(
        lambda: available(cluster, "wide", namespace) == 500,
        timeout=300,
        interval=1,
        message="500 available replicas",
    )
    all_pods = pods(cluster, "wide", namespace)
    assert len(all_pods) == 500
    assert all(is_ready(p) for p in all_pods)
    # The pod CIDR is large enough: every pod has its own address.
    assert len({p.status.pod_ip for p in all_pods}) == 500
    cluster.kubectl("scale", "deployment", "wide", "--replicas=0", "-n", namespace)
    wait_for(
        lambda: not pods(cluster, "wide", namespace),
        timeout=120,
        interval=1,
        message="500 pods deleted",
    )
