"""Desired Deployment, Service and PodDisruptionBudget of one served ModelVersion.

Pure builders (like dask-kubernetes' ``build_*_spec``): ModelVersion + Rollout settings in,
plain Kubernetes objects out; the handlers apply them with server-side apply. Each object
is named after the ModelVersion, labelled for selection, annotated with lineage and
digest, and owned by the Rollout.

The artifact reaches the model server as ``MODEL_URI``/``MODEL_DIGEST``. With a storage
initializer image configured, an init container downloads it into an emptyDir
(``MODEL_DIR``) and verifies the digest before the server starts; a mismatch keeps the
pod from ever becoming Ready, so no traffic can reach an unverified model.
"""

from __future__ import annotations

import copy
from typing import Any

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import initializer, labels, pod_security

SERVER_CONTAINER = "model-server"
PORT_NAME = "http"
NON_ROOT_UID = 65532

Obj = dict[str, Any]


def _metadata(mv: ModelVersion, rollout: Rollout) -> Obj:
    return {
        "name": mv.metadata.name,
        "namespace": rollout.metadata.namespace,
        "labels": labels.object_labels(mv, rollout.metadata.name),
        "annotations": labels.lineage_annotations(mv),
        "ownerReferences": [labels.owner_reference(rollout)],
    }


def _env(mv: ModelVersion, with_init: bool) -> list[Obj]:
    env = [copy.deepcopy(e) for e in (mv.spec.serving.env or [])]
    env += [
        {"name": "MODEL_NAME", "value": mv.spec.model},
        {"name": "MODEL_VERSION", "value": mv.spec.version},
        {"name": "MODEL_URI", "value": mv.spec.artifact.uri},
        {"name": "MODEL_DIGEST", "value": mv.spec.artifact.digest},
    ]
    if with_init:
        env.append({"name": "MODEL_DIR", "value": initializer.MODEL_DIR})
    return env


def _pod_spec(mv: ModelVersion, rollout: Rollout, init_image: str | None) -> Obj:
    serving = mv.spec.serving
    placement = rollout.spec.template
    server: Obj = {
        "name": SERVER_CONTAINER,
        "image": serving.image,
        "ports": [{"name": PORT_NAME, "containerPort": serving.port, "protocol": "TCP"}],
        "env": _env(mv, with_init=init_image is not None),
        "readinessProbe": {
            "httpGet": {"path": serving.readiness_path, "port": PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": pod_security.container(),
    }
    if serving.command:
        server["command"] = list(serving.command)
    if serving.args:
        server["args"] = list(serving.args)
    resources = (placement.resources if placement else None) or serving.resources
    if resources:
        server["resources"] = copy.deepcopy(resources)
    spec: Obj = {
        "containers": [server],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "fsGroup": NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
    }
    if init_image:
        model = initializer.model_store(mv, rollout, init_image)
        server["volumeMounts"] = model.server_mounts
        spec["initContainers"] = model.init_containers
        spec["volumes"] = model.volumes
    if placement:
        for key, value in (
            ("nodeSelector", placement.node_selector),
            ("tolerations", placement.tolerations),
            ("affinity", placement.affinity),
            ("serviceAccountName", placement.service_account_name),
            ("priorityClassName", placement.priority_class_name),
        ):
            if value:
                spec[key] = copy.deepcopy(value)
        if placement.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": s.name} for s in placement.image_pull_secrets]
    return spec


def deployment(
    mv: ModelVersion, rollout: Rollout, *, replicas: int, init_image: str | None = None
) -> Obj:
    """The Deployment serving ``mv`` with ``replicas`` replicas."""
    selector = labels.version_labels(mv, rollout.metadata.name)
    pod_annotations = dict(labels.lineage_annotations(mv))
    if rollout.spec.template and rollout.spec.template.pod_annotations:
        pod_annotations.update(rollout.spec.template.pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(mv, rollout),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            # Never fewer Ready replicas than asked for during an update (e.g. a
            # template change): the route may be sending traffic to every one of them.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "progressDeadlineSeconds": rollout.spec.progress_deadline_seconds,
            "template": {
                "metadata": {
                    "labels": labels.object_labels(mv, rollout.metadata.name),
                    "annotations": pod_annotations,
                },
                "spec": _pod_spec(mv, rollout, init_image),
            },
        },
    }


def service_port(rollout: Rollout) -> int:
    return rollout.spec.service.port if rollout.spec.service else 80


def service(mv: ModelVersion, rollout: Rollout) -> Obj:
    """The Service of one version: what routes point their weighted backends at."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(mv, rollout),
        "spec": {
            "type": "ClusterIP",
            "selector": labels.version_labels(mv, rollout.metadata.name),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": service_port(rollout),
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def pod_disruption_budget(mv: ModelVersion, rollout: Rollout) -> Obj:
    """Voluntary evictions take at most one replica of a version at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(mv, rollout),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels.version_labels(mv, rollout.metadata.name)},
        },
    }
