"""The ModelVersions' side of a reconcile: their role, serving Rollout, phase and serving
times follow the Rollout's stable and candidate versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion, Role
from ferryman.api.rollout import Rollout
from ferryman.handlers.executor import Writer


async def update_roles(
    kube: Writer,
    rollout: Rollout,
    stable: str | None,
    candidate: str | None,
    mvs: list[ModelVersion],
    now: datetime,
) -> None:
    """Keep each ModelVersion's role, rollout, phase and serving times current."""
    for mv in mvs:
        if mv.status.phase == "Duplicate":
            continue
        role = (
            Role.STABLE
            if mv.spec.version == stable
            else Role.CANDIDATE
            if mv.spec.version == candidate
            else Role.NONE
        )
        serving_now = role != Role.NONE
        patch: dict[str, Any] = {}
        if mv.status.role != role:
            patch["role"] = role.value
        if serving_now and mv.status.rollout != rollout.metadata.name:
            patch["rollout"] = rollout.metadata.name
        if not serving_now and mv.status.rollout:
            patch["rollout"] = None
        if serving_now and mv.status.phase != "Serving":
            patch["phase"] = "Serving"
            patch["servedFrom"] = now.isoformat()
            patch["servedUntil"] = None
        if not serving_now and mv.status.phase == "Serving":
            patch["phase"] = "Retired"
            patch["servedUntil"] = now.isoformat()
        if patch:
            await kube.patch_status(MV_PLURAL, mv.metadata.namespace, mv.metadata.name, patch)
