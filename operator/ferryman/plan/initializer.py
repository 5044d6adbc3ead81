"""The storage initializer's part of a served version's pod: init container and volumes.

Kept apart from ``plan/serving.py`` (the model server's container, Service and PDB)
because how an artifact reaches the pod (stores, credentials, claims, sizes) grows on
its own. Pure: ModelVersion + Rollout settings in, plain pod-spec fragments out.

The init container downloads the artifact into the model volume (an emptyDir) and
verifies its digest before the model server starts (``ferryman.storage_init``); the
server mounts the volume read-only at ``MODEL_DIR``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import pod_security

INIT_CONTAINER = "storage-initializer"
MODEL_VOLUME = "model-store"
MODEL_DIR = "/mnt/models"

Obj = dict[str, Any]


@dataclass(frozen=True)
class ModelStore:
    """Pod-spec fragments: ``initContainers``, ``volumes`` and the server's ``volumeMounts``."""

    init_containers: list[Obj]
    volumes: list[Obj]
    server_mounts: list[Obj]


def _init_container(mv: ModelVersion, rollout: Rollout, image: str) -> Obj:
    container: Obj = {
        "name": INIT_CONTAINER,
        "image": image,
        "command": ["python", "-m", "ferryman.storage_init"],
        "args": [
            f"--uri={mv.spec.artifact.uri}",
            f"--digest={mv.spec.artifact.digest}",
            f"--dest={MODEL_DIR}",
        ],
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}],
        "securityContext": pod_security.container(),
        # The failure's line, or the log tail when the file is empty (handlers.pods).
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if rollout.spec.storage and rollout.spec.storage.secret_name:
        container["envFrom"] = [{"secretRef": {"name": rollout.spec.storage.secret_name}}]
    return container


def model_store(mv: ModelVersion, rollout: Rollout, image: str) -> ModelStore:
    """The init container (running ``image``) and volumes that put the artifact at MODEL_DIR."""
    return ModelStore(
        init_containers=[_init_container(mv, rollout, image)],
        volumes=[{"name": MODEL_VOLUME, "emptyDir": {}}],
        server_mounts=[{"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}],
    )
