"""``OlderHistory``: what fell off a bounded history list (a Rollout's ``status.history``,
a ModelVersion's ``status.servingHistory``), summarized instead of silently dropped
(issue 17 §4). A module of its own so both resources' status models can import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import Field

from ferryman.api.common import ApiModel


class OlderHistory(ApiModel):
    """What fell off a bounded history list, summarized: how many entries, their time
    span, and how many ended each way (keyed by outcome, or by ``IntervalEnd`` for a
    ModelVersion's intervals)."""

    count: int = Field(0, ge=0, description="Entries dropped from the list, oldest first.")
    since: datetime | None = Field(None, description="When the oldest entry dropped began.")
    until: datetime | None = Field(None, description="When the newest entry dropped ended.")
    outcomes: dict[str, int] | None = Field(
        None, max_length=16, description="Entries dropped, counted by how they ended."
    )


def summarize(
    older: OlderHistory | None, dropped: Sequence[tuple[datetime, datetime | None, str]]
) -> OlderHistory:
    """``older`` with ``dropped`` added to it: the count, the time span and the count per
    ending. Each dropped entry is (its start, its end or None, how it ended), oldest
    first; a history entry is a moment (start == end), a served interval a span."""
    have = older or OlderHistory()
    outcomes = dict(have.outcomes or {})
    for _, _, ended in dropped:
        outcomes[ended] = outcomes.get(ended, 0) + 1
    starts = [t for t in (have.since, *(d[0] for d in dropped)) if t is not None]
    ends = [t for t in (have.until, *(d[1] or d[0] for d in dropped)) if t is not None]
    return OlderHistory(
        count=have.count + len(dropped),
        since=min(starts, default=None),
        until=max(ends, default=None),
        outcomes=outcomes or None,
    )
