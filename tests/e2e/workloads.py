"""Small manifests and readers shared by the smoke tests of the local control plane."""

from __future__ import annotations

from typing import Any

from harness.images import model_image
from harness.kube import Cluster


def deployment(name: str, replicas: int, image: str | None = None) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods of ``image`` (default: the suite's model image,
    harness.images)."""
    image = image or model_image("registry.example/model-server:1")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "server", "image": image}]},
            },
        },
    }


def available(cluster: Cluster, name: str, namespace: str) -> int:
    status = cluster.apps.read_namespaced_deployment_status(name, namespace).status
    return int(status.available_replicas or 0)


def pods(cluster: Cluster, app: str, namespace: str) -> list[Any]:
    return list(cluster.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def ready_condition(pod: Any) -> Any | None:
    for c in pod.status.conditions or []:
        if c.type == "Ready":
            return c
    return None


def is_ready(pod: Any) -> bool:
    c = ready_condition(pod)
    return c is not None and c.status == "True"
