"""The ModelVersions' side of a reconcile: write the status patches ``plan.roles``
decides (role, serving Rollout, phase, serving times, last outcome).

``plan.roles`` decides on the ModelVersions as kopf's index holds them, which lags our
own status writes: every reconcile before the index catches up would write the same
patch again (issue 12 counted ~6.5 status patches per ModelVersion per rollout), and a
later one would stamp ``servedFrom`` anew. So each ModelVersion is decided on its status
as this process knows it (``handlers.ledger.believed_status``: the index entry, with our
writes since merged in while the entry is still the one they were decided on), and a
patch that would change nothing is not written.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion, ModelVersionStatus
from ferryman.api.rollout import Rollout, RolloutStatus
from ferryman.handlers.executor import Writer
from ferryman.handlers.ledger import StatusLedger, believed_status, note_status
from ferryman.plan.roles import status_patches


def served_by(mv: ModelVersion, rollout: str) -> bool:
    """Whether ``mv``'s status names Rollout ``rollout`` as serving it, or holds an open
    serving interval of it."""
    history = mv.status.serving_history or []
    open_ = bool(history) and history[-1].served_until is None and history[-1].rollout == rollout
    return mv.status.rollout == rollout or open_


async def update_roles(
    kube: Writer,
    rollout: Rollout,
    status: RolloutStatus | None,
    mvs: Iterable[ModelVersion],
    now: datetime,
    written: StatusLedger | None = None,
) -> None:
    """Write each ModelVersion's status patch from ``plan.roles.status_patches`` for
    ``rollout`` with ``status`` (None: the Rollout is gone); one status patch per
    ModelVersion that needs one, in the namespace of ``rollout``; with ``status`` None
    only those ``served_by`` it, decided on their status as ``written`` says (the index
    may not show yet a version the last reconcile started). ``written``: this
    process's status writes (module docstring), consulted and updated; None decides on
    ``mvs`` as they are."""
    ns = rollout.metadata.namespace
    observed: dict[str, tuple[str, dict[str, Any]]] = {}
    believed: list[ModelVersion] = []
    for mv in mvs:
        rv = mv.metadata.resource_version
        dumped = mv.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        observed[mv.metadata.name] = (rv, dumped)
        known = believed_status(written, (MV_PLURAL, ns, mv.metadata.name), rv, dumped)
        if known is not dumped:
            mv = mv.model_copy(update={"status": ModelVersionStatus.model_validate(known)})
        believed.append(mv)
    if status is None:  # gone: only what it served (as this process knows the statuses)
        believed = [mv for mv in believed if served_by(mv, rollout.metadata.name)]
    patches = status_patches(rollout.metadata.name, rollout.spec, status, believed, now)
    for name, patch in patches.items():
        await kube.patch_status(MV_PLURAL, ns, name, patch)
        rv, dumped = observed[name]
        note_status(written, (MV_PLURAL, ns, name), rv, dumped, patch)
