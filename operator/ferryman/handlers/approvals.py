"""ModelApprovals as the operator sees them: a kopf index by (namespace, Rollout), and a
wake-up of that Rollout on every create, change or delete, so an approval unpauses a
rollout waiting at its gate at once (``plan.approvals`` counts; docs/approvals.md).

The operator only lists and watches ModelApprovals (the chart's RBAC grants nothing
more): it never writes them, and it trusts their claims because the API server proved
them at creation (``api.approval``'s admission policy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from ferryman.api.approval import PLURAL, ModelApproval
from ferryman.api.common import GROUP, VERSION
from ferryman.handlers import wakeups
from ferryman.plan.decision import Approval

INDEX = "approvals_by_rollout"


def _not_deleted(body: kopf.Body, **_: Any) -> bool:
    return not body.metadata.get("deletionTimestamp")


# kopf drops an object's entry when it stops matching the filter (a None result would
# keep the old one).
@kopf.index(GROUP, VERSION, PLURAL, when=_not_deleted)
def approvals_by_rollout(*, body: kopf.Body, namespace: str | None, **_: Any) -> Any:
    """{(namespace, Rollout name): Approval}; an object the model cannot read is left out,
    and so is one being deleted: `kubectl delete` withdraws an approval at once, even
    while another controller's finalizer keeps the object Terminating."""
    try:
        obj = ModelApproval.model_validate(dict(body))
    except ValueError:
        return {}
    spec = obj.spec
    approval = Approval(
        name=obj.metadata.name,
        version=spec.version,
        approved_by=spec.approved_by,
        groups=tuple(spec.groups or ()),
        created=obj.metadata.creation_timestamp,
    )
    return {(namespace, spec.rollout): approval}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def approval_changed(
    *, namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    wakeups.wake(memo, namespace, (body.get("spec") or {}).get("rollout"))


def of(indexes: Mapping[str, Any], namespace: str, rollout: str) -> tuple[Approval, ...]:
    """The Rollout's approvals, in a stable order (the index's order is arbitrary)."""
    # Absent only where a caller builds the indexes by hand (unit tests of other paths);
    # kopf always passes every registered index.
    found = indexes.get(INDEX, {}).get((namespace, rollout), [])
    return tuple(sorted(found, key=lambda a: a.name))
