"""The ModelVersions' side of a reconcile: write the status patches ``plan.roles``
decides (role, serving Rollout, phase, serving times, last outcome)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout, RolloutStatus
from ferryman.handlers.executor import Writer
from ferryman.plan.roles import status_patches


async def update_roles(
    kube: Writer,
    rollout: Rollout,
    status: RolloutStatus | None,
    mvs: Iterable[ModelVersion],
    now: datetime,
) -> None:
    """Write each ModelVersion's status patch from ``plan.roles.status_patches`` for
    ``rollout`` with ``status`` (None: the Rollout is gone); one status patch per
    ModelVersion that needs one, in the namespace of ``rollout``."""
    ns = rollout.metadata.namespace
    patches = status_patches(rollout.metadata.name, rollout.spec, status, mvs, now)
    for name, patch in patches.items():
        await kube.patch_status(MV_PLURAL, ns, name, patch)
