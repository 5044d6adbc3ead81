"""The durable audit trail (issue 17 §4): each ModelVersion's own bounded serving history
(``status.servingHistory``), and the summary of what fell off a bounded history, the
ModelVersion's and the Rollout's (``OlderHistory``).

A Rollout's ``status.history`` says how each candidate's rollout ended, but it is capped
at ``historyLimit`` entries and goes with the Rollout. A ModelVersion outlives both: its
status keeps every interval it served (newest ``MAX_SERVED_INTERVALS``), the roles it
held, the Rollout's verdict on it (with the failed measurement behind a rollback) and why
it stopped serving, so "which version served when, and why did it stop" can be answered
after the Rollout is gone (``kubectl ferryman lineage`` / ``history``). What falls off
either bounded list is counted, not silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from ferryman.api.common import ApiModel, bounded_text
from ferryman.api.older_history import OlderHistory as OlderHistory
from ferryman.api.rollout_limits import MAX_REASON
from ferryman.api.rollout_status import HistoryCause, HistoryOutcome, Measurement

# Intervals kept in a ModelVersion's status.servingHistory (newest last). A version
# served, let go and served again 20 times is rare; older ones are counted in
# status.olderServingHistory. Each interval is at most ~4 KiB (reason, measurement), so
# the list stays under 100 KiB.
MAX_SERVED_INTERVALS = 20
MAX_ROLES = 4  # stable, candidate, shadow, preview: each at most once per interval


class ServedRole(StrEnum):
    """A role that gets traffic, live or mirrored (``Role`` without ``none``)."""

    STABLE = "stable"
    CANDIDATE = "candidate"
    SHADOW = "shadow"
    PREVIEW = "preview"


class IntervalEnd(StrEnum):
    """Why a ModelVersion stopped being served by a Rollout."""

    ROLLED_BACK = "RolledBack"  # the Rollout's verdict (cause: Analysis, Undo, ...)
    ABORTED = "Aborted"  # `kubectl ferryman abort`
    SUPERSEDED = "Superseded"  # a new target replaced it mid-rollout
    STOPPED = "Stopped"  # shadow then: stop, or an A/B test that found no winner
    REPLACED = "Replaced"  # another version was promoted to stable (``replacedBy``)
    ROLLOUT_DELETED = "RolloutDeleted"  # its Rollout was deleted while it served
    RELEASED = "Released"  # the Rollout let it go for no recorded reason


class ServedInterval(ApiModel):
    """One interval during which a Rollout served this version (live or mirrored
    traffic, or a blue-green preview), and how it ended."""

    rollout: str = Field(max_length=253, description="The Rollout that served it.")
    served_from: datetime = Field(description="When the Rollout took it on.")
    served_until: datetime | None = Field(
        None, description="When the Rollout let it go; unset while it still serves."
    )
    roles: list[ServedRole] = Field(
        default_factory=list,
        max_length=MAX_ROLES,
        description="The roles it held, in the order it first held them (e.g. "
        "[candidate, stable] for a promoted canary).",
    )
    outcome: HistoryOutcome | None = Field(
        None,
        description="The Rollout's verdict on it in this interval (its newest "
        "status.history entry since servedFrom): Promoted, RolledBack, Aborted, "
        "Superseded or Stopped.",
    )
    cause: HistoryCause | None = Field(None, description="For RolledBack and Aborted: why.")
    at: datetime | None = Field(None, description="When the verdict was given.")
    reason: Annotated[str, bounded_text(MAX_REASON)] = Field(
        "", max_length=MAX_REASON, description="The verdict's reason, in words."
    )
    measurement: Measurement | None = Field(
        None, description="For an analysis rollback: the failed measurement that caused it."
    )
    ended: IntervalEnd | None = Field(
        None,
        description="Why it stopped serving: RolledBack, Aborted, Superseded, Stopped, "
        "Replaced, RolloutDeleted or Released; unset while it still serves.",
    )
    replaced_by: str | None = Field(
        None, max_length=128, description="With ended Replaced: the version promoted in its place."
    )
