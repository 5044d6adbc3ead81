"""ModelVersion registration (Registered / Duplicate) and the served-deletion guard.

Two kopf indexes answer every question without API calls: ModelVersions by
(namespace, model, version), and Rollouts by (namespace, model) with the versions they
serve. Each ModelVersion event re-evaluates that ModelVersion; a deletion re-evaluates
its siblings (the oldest remaining one takes the version over). Writes happen only when
the desired status differs from the current one, so our own status writes, which come
back as events, cost nothing more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from ferryman.api.common import GROUP, VERSION, event_message
from ferryman.api.modelversion import KIND, PLURAL, ModelVersionPhase, ModelVersionStatus
from ferryman.api.rollout import PLURAL as ROLLOUT_PLURAL
from ferryman.api.rollout import RolloutStatus
from ferryman.handlers import wakeups
from ferryman.handlers.context import context
from ferryman.kube.client import Kube
from ferryman.plan import registry

Key = tuple[str, str, str]


def _registration(body: kopf.Body) -> registry.Registration | None:
    spec, meta = body.get("spec") or {}, body.metadata
    if not spec.get("model") or not spec.get("version"):
        return None
    created = meta.get("creationTimestamp")
    return registry.Registration(
        name=meta.name or "",
        namespace=meta.namespace or "",
        uid=meta.uid or "",
        model=spec["model"],
        version=spec["version"],
        created=datetime.fromisoformat(created) if created else None,
        generation=int(meta.get("generation") or 0),
        deleting=bool(meta.get("deletionTimestamp")),
        status=ModelVersionStatus.model_validate(body.get("status") or {}),
    )


@kopf.index(GROUP, VERSION, PLURAL)
def modelversions_by_key(*, body: kopf.Body, **_: Any) -> dict[Key, registry.Registration]:
    reg = _registration(body)
    return {reg.key: reg} if reg else {}


@kopf.index(GROUP, VERSION, ROLLOUT_PLURAL)
def rollouts_by_model(
    *,
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[tuple[str, str], registry.ServedBy]:
    model = spec.get("model")
    if not model or not namespace:
        return {}
    versions = registry.served_versions(RolloutStatus.model_validate(dict(status)))
    created = meta.get("creationTimestamp")
    return {
        (namespace, model): registry.ServedBy(
            name, namespace, model, versions, datetime.fromisoformat(created) if created else None
        )
    }


def _ref(reg: registry.Registration) -> kopf.Body:
    """Enough of an object for kopf to post an Event about it."""
    return kopf.Body(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": reg.name, "namespace": reg.namespace, "uid": reg.uid},
        }
    )


async def _register(
    kube: Kube, reg: registry.Registration, claims: list[registry.Registration]
) -> None:
    patch = registry.desired_status(reg, claims, now=datetime.now(UTC))
    if patch is None:
        return
    await kube.patch_status(PLURAL, reg.namespace, reg.name, patch)
    if (
        patch["phase"] == ModelVersionPhase.DUPLICATE
        and reg.status.phase != ModelVersionPhase.DUPLICATE
    ):
        kopf.warn(
            _ref(reg), reason="Duplicate", message=event_message(patch["conditions"][-1]["message"])
        )
    elif reg.status.phase != patch["phase"]:
        kopf.info(_ref(reg), reason=patch["phase"], message=f"version {reg.version} of {reg.model}")


@kopf.on.event(GROUP, VERSION, PLURAL)
async def modelversion_event(*, type: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    reg = _registration(body)
    if reg is None:
        return
    # Rollouts of this model may now resolve their target differently.
    for served in kwargs["rollouts_by_model"].get((reg.namespace, reg.model), []):
        wakeups.wake(memo, reg.namespace, served.rollout)
    index: kopf.Index[Key, registry.Registration] = kwargs["modelversions_by_key"]
    claims = [c for c in index.get(reg.key, []) if c.name != reg.name]
    if type == "DELETED" or reg.deleting:
        # The version may change hands: re-evaluate the others claiming it.
        alive = [c for c in claims if not c.deleting]
        for sibling in alive:
            await _register(context(memo).kube, sibling, alive)
        return
    await _register(context(memo).kube, reg, claims)


def _served(*, status: kopf.Status, **_: Any) -> bool:
    """Only ModelVersions a Rollout serves carry the finalizer: deleting any other one
    never waits for the operator."""
    return bool(status.get("rollout"))


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_served)
async def guard_served_deletion(*, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    reg = _registration(body)
    if reg is None:
        return
    index: kopf.Index[tuple[str, str], registry.ServedBy] = kwargs["rollouts_by_model"]
    blocker = registry.deletion_blocker(reg, index.get((reg.namespace, reg.model), []))
    if blocker:
        await context(memo).kube.patch_status(
            PLURAL,
            reg.namespace,
            reg.name,
            registry.deletion_blocked_status(reg, blocker, now=datetime.now(UTC)),
        )
        raise kopf.TemporaryError(
            f"ModelVersion {reg.name} is served by Rollout {blocker}; deletion waits", delay=5
        )
