"""The storage initializer's part of a served version's pod: init container and volumes.

Kept apart from ``plan/serving.py`` (the model server's container, Service and PDB)
because how an artifact reaches the pod (stores, credentials, claims, sizes) grows on
its own. Pure: ModelVersion + Rollout settings in, plain pod-spec fragments out.

Downloaded stores (https, s3, gs, oci): the init container fetches the artifact into the
model volume (an emptyDir, ``sizeLimit`` = ``artifact.size`` when set) and verifies its
digest before the model server starts (``ferryman.storage_init``); the server mounts the
volume read-only at ``MODEL_DIR``, the artifact at ``MODEL_DIR/<name>``.

``pvc://claim/path``: no copy. The init container mounts the claim read-only at
``/mnt/pvc/<claim>`` and verifies the digest in place; the server mounts the claim's
``path`` read-only (``subPath``) at ``MODEL_DIR/<last segment of path>``.

On failure the initializer writes one ``<Reason>: <message>`` line to
``/dev/termination-log``; ``FallbackToLogsOnError`` gives the log's tail when it could
not (the contract with the operator's Pod watch, docs/artifacts.md).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import pod_security

INIT_CONTAINER = "storage-initializer"
MODEL_VOLUME = "model-store"
CLAIM_VOLUME = "model-claim"
MODEL_DIR = "/mnt/models"
PVC_ROOT = "/mnt/pvc"
TERMINATION_LOG = "/dev/termination-log"
# The initializer streams in 1 MiB chunks: its memory does not grow with the model.
# Requests/limits documented in docs/artifacts.md ("Sizes").
RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}

Obj = dict[str, Any]


@dataclass(frozen=True)
class ModelStore:
    """Pod-spec fragments: ``initContainers``, ``volumes`` and the server's ``volumeMounts``."""

    init_containers: list[Obj]
    volumes: list[Obj]
    server_mounts: list[Obj]


def _claim(uri: str) -> tuple[str, str] | None:
    """(claim, path) of a ``pvc://`` URI, else None. The schema admits only well-formed
    URIs; a path-less one gets a mount of the whole claim, and the initializer refuses it
    (InvalidArtifact)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "pvc":
        return None
    return parsed.netloc, parsed.path.strip("/")


def _resources(mv: ModelVersion) -> Obj:
    resources: Obj = {k: dict(v) for k, v in RESOURCES.items()}
    if mv.spec.artifact.size and not _claim(mv.spec.artifact.uri):
        resources["requests"]["ephemeral-storage"] = mv.spec.artifact.size
    return resources


def _init_container(mv: ModelVersion, rollout: Rollout, image: str, mounts: list[Obj]) -> Obj:
    container: Obj = {
        "name": INIT_CONTAINER,
        "image": image,
        "command": ["python", "-m", "ferryman.storage_init"],
        "args": [
            f"--uri={mv.spec.artifact.uri}",
            f"--digest={mv.spec.artifact.digest}",
            f"--dest={MODEL_DIR}",
            f"--pvc-root={PVC_ROOT}",
            f"--termination-log={TERMINATION_LOG}",
        ],
        "volumeMounts": mounts,
        "resources": _resources(mv),
        "terminationMessagePath": TERMINATION_LOG,
        # The failure's line, or the log tail when the file is empty (handlers.pods).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": pod_security.container(),
    }
    if rollout.spec.storage and rollout.spec.storage.secret_name:
        container["envFrom"] = [{"secretRef": {"name": rollout.spec.storage.secret_name}}]
    return container


def model_store(mv: ModelVersion, rollout: Rollout, image: str) -> ModelStore:
    """The init container (running ``image``) and volumes that put the artifact at MODEL_DIR."""
    claim = _claim(mv.spec.artifact.uri)
    if claim is not None:
        name, path = claim
        volume = {
            "name": CLAIM_VOLUME,
            "persistentVolumeClaim": {"claimName": name, "readOnly": True},
        }
        init_mount = {"name": CLAIM_VOLUME, "mountPath": f"{PVC_ROOT}/{name}", "readOnly": True}
        server_mount: Obj = {"name": CLAIM_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
        if path:
            server_mount["mountPath"] = f"{MODEL_DIR}/{PurePosixPath(path).name}"
            server_mount["subPath"] = path
        return ModelStore(
            init_containers=[_init_container(mv, rollout, image, [init_mount])],
            volumes=[volume],
            server_mounts=[server_mount],
        )
    empty_dir: Obj = {}
    if mv.spec.artifact.size:
        empty_dir["sizeLimit"] = mv.spec.artifact.size
    mount = {"name": MODEL_VOLUME, "mountPath": MODEL_DIR}
    return ModelStore(
        init_containers=[_init_container(mv, rollout, image, [mount])],
        volumes=[{"name": MODEL_VOLUME, "emptyDir": empty_dir}],
        server_mounts=[{"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}],
    )
