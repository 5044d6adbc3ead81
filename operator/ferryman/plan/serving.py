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

from ferryman.api.modelversion import ModelVersion, Serving
from ferryman.api.rollout import Rollout
from ferryman.api.serving import PRIMARY_PORT, Probe
from ferryman.plan import initializer, labels, pod_security

SERVER_CONTAINER = "model-server"
PORT_NAME = PRIMARY_PORT
NON_ROOT_UID = 65532
# ferryman's readiness probe timings where the ModelVersion gives none (seconds, count).
READINESS_DEFAULTS = {"periodSeconds": 5, "failureThreshold": 3}
PROBE_TIMINGS = (
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
)

Obj = dict[str, Any]


def _dump(model: Any) -> Obj:
    out: Obj = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return out


def primary_port(serving: Serving) -> int:
    """The number of the primary HTTP port: the ``ports`` entry named http, else ``port``."""
    named = [p.container_port for p in serving.ports or [] if p.name == PORT_NAME]
    return named[0] if named else serving.port


def _extra_ports(serving: Serving) -> list[Any]:
    return [p for p in serving.ports or [] if p.name != PORT_NAME]


def _container_ports(serving: Serving) -> list[Obj]:
    ports = [{"name": PORT_NAME, "containerPort": primary_port(serving), "protocol": "TCP"}]
    for p in _extra_ports(serving):
        ports.append(
            {"name": p.name, "containerPort": p.container_port, "protocol": p.protocol.value}
        )
    return ports


def _probe(probe: Probe, serving: Serving, defaults: Obj | None = None) -> Obj:
    """A core/v1 Probe from the ModelVersion's: ports by name, except gRPC's (the API
    wants a number there, so the name is looked up); timings copied where given."""
    numbers = {p["name"]: p["containerPort"] for p in _container_ports(serving)}
    out: Obj = {}
    if probe.http_get:
        out["httpGet"] = {"port": PORT_NAME, **_dump(probe.http_get)}
    elif probe.grpc:
        out["grpc"] = {**_dump(probe.grpc), "port": numbers[probe.grpc.port or PORT_NAME]}
    elif probe.tcp_socket:
        out["tcpSocket"] = {"port": probe.tcp_socket.port or PORT_NAME}
    timings = {**(defaults or {}), **_dump(probe)}
    out.update({k: timings[k] for k in PROBE_TIMINGS if k in timings})
    return out


def _probes(serving: Serving) -> Obj:
    if serving.readiness_probe:
        readiness = _probe(serving.readiness_probe, serving, READINESS_DEFAULTS)
    else:
        readiness = {
            "httpGet": {"path": serving.readiness_path, "port": PORT_NAME},
            **READINESS_DEFAULTS,
        }
    out = {"readinessProbe": readiness}
    if serving.liveness_probe:
        out["livenessProbe"] = _probe(serving.liveness_probe, serving)
    if serving.startup_probe:
        out["startupProbe"] = _probe(serving.startup_probe, serving)
    return out


def _container_security(serving: Serving) -> Obj:
    context = pod_security.container()
    override = serving.security_context
    if override and override.read_only_root_filesystem is not None:
        context["readOnlyRootFilesystem"] = override.read_only_root_filesystem
    if override and override.capabilities and override.capabilities.add:
        context["capabilities"] = {"drop": ["ALL"], "add": list(override.capabilities.add)}
    return context


def _pod_security(serving: Serving) -> Obj:
    override = serving.security_context
    ids = {
        "runAsUser": override.run_as_user if override else None,
        "runAsGroup": override.run_as_group if override else None,
        "fsGroup": override.fs_group if override else None,
    }
    return {
        "runAsNonRoot": True,
        **{key: NON_ROOT_UID if value is None else value for key, value in ids.items()},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _metadata(mv: ModelVersion, rollout: Rollout) -> Obj:
    return {
        "name": mv.metadata.name,
        "namespace": rollout.metadata.namespace,
        "labels": labels.object_labels(mv, rollout.metadata.name),
        "annotations": labels.lineage_annotations(mv),
        "ownerReferences": [labels.owner_reference(rollout)],
    }


def _env(mv: ModelVersion, with_init: bool) -> list[Obj]:
    env = [_dump(e) for e in (mv.spec.serving.env or [])]
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
        "ports": _container_ports(serving),
        "env": _env(mv, with_init=init_image is not None),
        **_probes(serving),
        "securityContext": _container_security(serving),
    }
    if serving.env_from:
        server["envFrom"] = [_dump(e) for e in serving.env_from]
    if serving.command:
        server["command"] = list(serving.command)
    if serving.args:
        server["args"] = list(serving.args)
    resources = (placement.resources if placement else None) or serving.resources
    if resources:
        server["resources"] = copy.deepcopy(resources)
    spec: Obj = {
        "containers": [server],
        "securityContext": _pod_security(serving),
        "automountServiceAccountToken": False,
    }
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    if init_image:
        model = initializer.model_store(mv, rollout, init_image)
        mounts += model.server_mounts
        spec["initContainers"] = model.init_containers
        volumes += model.volumes
    # Never a hostPath, even from an object the CRD's rule did not check (docs).
    volumes += [_dump(v.model_copy(update={"host_path": None})) for v in serving.volumes or []]
    mounts += [_dump(m) for m in serving.volume_mounts or []]
    if mounts:
        server["volumeMounts"] = mounts
    if volumes:
        spec["volumes"] = volumes
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


GRPC = "grpc"  # the appProtocol of a gRPC serving port (issue 15 §3)


def grpc_port(serving: Serving) -> int | None:
    """The Service port of the version's gRPC port (the first ``serving.ports`` entry with
    ``appProtocol: grpc``; extra ports keep their number), None without one."""
    found = [p.container_port for p in serving.ports or [] if p.app_protocol == GRPC]
    return found[0] if found else None


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
            "ports": _service_ports(mv.spec.serving, service_port(rollout)),
        },
    }


def _service_ports(serving: Serving, primary: int) -> list[Obj]:
    """The primary port at ``primary`` (the Rollout's service port), every other port at
    its own number; each targets the container port of its name and carries its
    ``appProtocol``. An extra port numbered like the service port makes the Service
    invalid: the API server refuses it (docs/serving-runtimes.md)."""
    declared = {p.name: p for p in serving.ports or []}
    out: list[Obj] = []
    for p in _container_ports(serving):
        number = primary if p["name"] == PORT_NAME else p["containerPort"]
        port = {"name": p["name"], "port": number, "targetPort": p["name"]}
        port["protocol"] = p["protocol"]
        spec = declared.get(p["name"])
        if spec is not None and spec.app_protocol:
            port["appProtocol"] = spec.app_protocol
        out.append(port)
    return out


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
