"""The pods of ferryman's Deployments, watched for one thing: a container that failed.

A candidate whose storage initializer cannot verify its artifact never becomes Ready,
and the Deployment says only that. Why is in the pod's status: the init container's
``terminated.message`` (or ``lastState.terminated`` while the kubelet backs off). This
module watches the pods ferryman's Deployments create, selected by the API server with
the ``app.kubernetes.io/managed-by: ferryman`` label every pod template carries
(``plan.labels.object_labels``; ``label_selectors``, applied at startup by
``handlers.lifecycle``), and keeps an index (``pod_failures``) of the failing ones only,
by (namespace, Rollout): a healthy pod is indexed as nothing at all (kopf keeps no entry
for an empty result), so at 1,000 Rollouts the index costs memory in proportion to the
pods that are failing, not to the pods that exist.

A pod's failure appearing, changing or going wakes its Rollout (``pod_changed``); any
other pod event wakes nothing. ``failures_by_version`` gives a reconcile one failure per
version (``plan.pod_failures.pick``), which the state machine reports and, for a
deterministic artifact failure of the candidate, acts on (``plan.pod_failures``).

The index is trusted as it is (not through ``handlers.ledger``): an entry kopf kept for a
pod that vanished during a re-list still tells a true failure of that version, whose
artifact and digest cannot change.

Needs ``list`` and ``watch`` on pods (the chart's RBAC, docs/install.md).
"""

from __future__ import annotations

from typing import Any

import kopf

from ferryman.handlers import wakeups
from ferryman.plan import labels
from ferryman.plan.pod_failures import PodFailure, failure_of, pick

SELECTOR = f"{labels.MANAGED_BY}=ferryman"
INDEX = "pod_failures"
# The failing pods' current failure by (namespace, pod name): what ``pod_changed``
# compares each event with. Healthy pods are absent.
_FAILING: dict[tuple[str, str], tuple[str, PodFailure]] = {}


def label_selectors(settings: kopf.OperatorSettings) -> None:
    """Watch only ferryman's pods, selected by the API server (``SELECTOR``)."""
    settings.watching.label_selectors["", "v1", "pods"] = SELECTOR


def _keyed(body: Any) -> tuple[str, str, PodFailure] | None:
    """(Rollout label value, version, failure) of a failing ferryman pod; else None."""
    meta = body.get("metadata") or {}
    rollout = (meta.get("labels") or {}).get(labels.ROLLOUT)
    version = (meta.get("annotations") or {}).get(f"{labels.PREFIX}/version")
    if not rollout or not version:
        return None
    found = failure_of(body)
    return (rollout, version, found) if found is not None else None


def pod_failures(*, body: kopf.Body, namespace: str | None, **_: Any) -> Any:
    """{(namespace, Rollout label value): (version, PodFailure)} for a failing pod;
    {} (no entry, and the pod's earlier entry removed) for any other."""
    keyed = _keyed(body)
    if keyed is None:
        return {}
    rollout, version, found = keyed
    return {(namespace, rollout): (version, found)}


async def pod_changed(
    *,
    type: str | None,
    body: kopf.Body,
    namespace: str | None,
    name: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Wake the pod's Rollout when its failure appears, changes or goes."""
    if not namespace or not name:
        return
    key = (namespace, name)
    keyed = None if type == "DELETED" else _keyed(body)
    now = (keyed[1], keyed[2]) if keyed is not None else None
    before = _FAILING.get(key)
    if now == before:
        return
    if now is None:
        _FAILING.pop(key, None)
    else:
        _FAILING[key] = now
    rollout = (body.get("metadata", {}).get("labels") or {}).get(labels.ROLLOUT)
    wakeups.wake(memo, namespace, rollout)


# Registered as plain calls so the functions stay callable as they are (tests).
_SELECTED = {labels.MANAGED_BY: "ferryman"}
kopf.index("", "v1", "pods", id=INDEX, labels=_SELECTED)(pod_failures)
kopf.on.event("", "v1", "pods", id="pod_changed", labels=_SELECTED)(pod_changed)


def failures_by_version(
    indexes: dict[str, Any], namespace: str, rollout: str
) -> dict[str, PodFailure]:
    """The failure each version of Rollout ``rollout`` reports (``pick``: one per
    version), from the handler's index kwargs; {} when no pod of it is failing."""
    index = indexes.get(INDEX)
    if index is None:
        return {}
    by_version: dict[str, list[PodFailure]] = {}
    for version, found in index.get((namespace, labels.label_value(rollout)), []):
        by_version.setdefault(version, []).append(found)
    return {v: f for v, fs in by_version.items() if (f := pick(fs)) is not None}
