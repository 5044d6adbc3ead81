"""Each ModelVersion's serving history (``status.servingHistory``, issue 17 §4), as a pure
function of what ``plan.roles`` decides: the role the Rollout gives the version now, the
Rollout's status (as the reconcile leaves it; None once the Rollout is gone) and the
clock. ``plan.roles`` adds the result to the status patch it writes anyway.

The rule, for the Rollout named ``rollout``:

- the version gets a role (stable, candidate, shadow, preview) and has no open interval
  of this Rollout: a new interval opens at ``now`` (after an operator upgrade, a version
  already ``Serving`` for this Rollout keeps its ``servedFrom``). An open interval of
  another Rollout is closed first (``Released``: that Rollout let it go unrecorded);
- an open interval of another Rollout that the status no longer names (``rollout``):
  closed ``Released`` at ``now`` too, though this Rollout does not serve the version.
  Only the Rollout that serves the model decides here, so that Rollout is gone (its
  deletion handler missed the interval: kopf's index did not show it yet, or the
  finalizer was taken off by hand); left open, it would say the version serves for
  ever. While the status names that Rollout it is left to it;
- while it serves: each new role is added to ``roles``; the Rollout's verdict on it (its
  newest ``status.history`` entry at or after ``servedFrom``: outcome, cause, reason,
  time, the failed measurement) is copied in as soon as it exists;
- it stops serving (role ``none``, or the Rollout is deleted): the interval closes at
  ``now`` with ``ended`` = the verdict when it ends serving (RolledBack, Aborted,
  Superseded, Stopped), else ``Replaced`` (another version became stable:
  ``replacedBy``), ``RolloutDeleted`` (status None), or ``Released``.

The list keeps the newest ``MAX_SERVED_INTERVALS``; the ones that fall off are counted in
``olderServingHistory`` (``api.older_history.summarize``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferryman.api.modelversion import ModelVersion, ModelVersionPhase, Role
from ferryman.api.older_history import summarize
from ferryman.api.rollout import HistoryEntry, HistoryOutcome, RolloutStatus
from ferryman.api.serving_history import (
    MAX_SERVED_INTERVALS,
    IntervalEnd,
    ServedInterval,
    ServedRole,
)

# The verdicts that end serving (Promoted and Rejected do not: a promoted version goes on
# as stable, a rejected one never served).
ENDINGS = {
    HistoryOutcome.ROLLED_BACK: IntervalEnd.ROLLED_BACK,
    HistoryOutcome.ABORTED: IntervalEnd.ABORTED,
    HistoryOutcome.SUPERSEDED: IntervalEnd.SUPERSEDED,
    HistoryOutcome.STOPPED: IntervalEnd.STOPPED,
}


def verdict(status: RolloutStatus | None, version: str, since: datetime) -> HistoryEntry | None:
    """The Rollout's newest ``status.history`` entry for ``version`` at or after
    ``since``, if any."""
    found = None
    for entry in (status.history or []) if status is not None else []:
        if entry.version == version and entry.at >= since:
            found = entry  # history is oldest first
    return found


def _with_verdict(interval: ServedInterval, entry: HistoryEntry | None) -> ServedInterval:
    if entry is None:
        return interval
    return interval.model_copy(
        update={
            "outcome": entry.outcome,
            "cause": entry.cause,
            "at": entry.at,
            "reason": entry.reason,
            "measurement": entry.measurement,
        }
    )


def _closed(
    interval: ServedInterval,
    status: RolloutStatus | None,
    version: str,
    now: datetime,
) -> ServedInterval:
    entry = verdict(status, version, interval.served_from)
    interval = _with_verdict(interval, entry)
    replaced_by = None
    if entry is not None and entry.outcome in ENDINGS:
        ended = ENDINGS[entry.outcome]
    elif status is None:
        ended = IntervalEnd.ROLLOUT_DELETED
    elif status.stable_version and status.stable_version != version:
        ended, replaced_by = IntervalEnd.REPLACED, status.stable_version
    else:
        ended = IntervalEnd.RELEASED
    return interval.model_copy(
        update={"served_until": now, "ended": ended, "replaced_by": replaced_by}
    )


def serving_history(
    mv: ModelVersion, rollout: str, role: Role, status: RolloutStatus | None, now: datetime
) -> tuple[list[ServedInterval], list[ServedInterval]]:
    """The intervals ``mv``'s status should hold (newest last, at most
    ``MAX_SERVED_INTERVALS``) given the ``role`` the Rollout named ``rollout`` gives it
    now, and the intervals that fell off (oldest first)."""
    intervals = list(mv.status.serving_history or [])
    version = mv.spec.version
    last = intervals[-1] if intervals and intervals[-1].served_until is None else None
    serving = role != Role.NONE
    if last is not None and last.rollout != rollout:
        if not serving and mv.status.rollout == last.rollout:
            return intervals, []  # another Rollout's interval: not ours to close
        intervals[-1] = last.model_copy(update={"served_until": now, "ended": IntervalEnd.RELEASED})
        last = None
    if last is not None:
        if serving:
            held = ServedRole(role.value)
            roles = last.roles if held in last.roles else [*last.roles, held]
            entry = verdict(status, version, last.served_from)
            intervals[-1] = _with_verdict(last.model_copy(update={"roles": roles}), entry)
        else:
            intervals[-1] = _closed(last, status, version, now)
    elif serving:
        since = now
        if (
            mv.status.phase == ModelVersionPhase.SERVING
            and mv.status.rollout == rollout
            and mv.status.served_from is not None
        ):
            since = mv.status.served_from  # served before this history existed (upgrade)
        opened = ServedInterval(rollout=rollout, served_from=since, roles=[ServedRole(role.value)])
        intervals.append(_with_verdict(opened, verdict(status, version, since)))
    cut = max(len(intervals) - MAX_SERVED_INTERVALS, 0)
    return intervals[cut:], intervals[:cut]


def history_patch(
    mv: ModelVersion, rollout: str, role: Role, status: RolloutStatus | None, now: datetime
) -> dict[str, Any]:
    """The part of ``mv``'s status merge patch (camelCase JSON) that brings its serving
    history up to date (``serving_history``); empty when it already is."""
    kept, dropped = serving_history(mv, rollout, role, status, now)
    have = mv.status.serving_history or []
    patch: dict[str, Any] = {}
    if kept != have:
        patch["servingHistory"] = [
            i.model_dump(by_alias=True, mode="json", exclude_none=True) for i in kept
        ]
    if dropped:
        older = summarize(
            mv.status.older_serving_history,
            [
                (i.served_from, i.served_until, i.ended.value if i.ended else "Serving")
                for i in dropped
            ],
        )
        patch["olderServingHistory"] = older.model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
    return patch
