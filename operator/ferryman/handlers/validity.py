"""Whether a Rollout's names can name ferryman's objects at all (``name_problem``): a
Rollout or ModelVersion created before the CRDs refused such names makes the Rollout
``Invalid`` before anything is written. Its own module so ``handlers.rollouts`` stays
the reconcile's outline."""

from __future__ import annotations

from ferryman.api import names
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import machine
from ferryman.plan.decision import VersionRecord


def name_problem(
    rollout: Rollout,
    records: tuple[VersionRecord, ...],
    by_version: dict[str, ModelVersion],
) -> str | None:
    """Why the Rollout's name, or its target ModelVersion's, cannot name the objects
    ferryman derives from it (``api.names``); None when both can. The CRDs refuse such
    names at creation, so this finds only objects created before they did."""
    found = names.problem(names.ROLLOUT, rollout.metadata.name)
    if found:
        return found
    target, _ = machine.resolve_target(
        rollout.spec,
        records,
        list(rollout.status.rolled_back_versions or []),
        rollout.status.stable_version,
    )
    mv = by_version.get(target or "")
    found = names.problem(names.MODEL_VERSION, mv.metadata.name) if mv else None
    if mv is not None and found:
        return f"ModelVersion {mv.metadata.name} cannot be served: {found}"
    # A served version's Service is named after its ModelVersion: it must not be one of
    # the Services this Rollout names after itself (the live/stable one, the preview).
    reserved = names.rollout_services(rollout.metadata.name)
    status = rollout.status
    for version in (target, status.stable_version, status.candidate_version):
        served = by_version.get(version or "")
        if served is not None and served.metadata.name in reserved:
            return (
                f"ModelVersion {served.metadata.name} (version {served.spec.version}) cannot "
                f"be served by Rollout {rollout.metadata.name}: its Service would be the "
                "Rollout's own Service of that name; register the version under another name"
            )
    return None
