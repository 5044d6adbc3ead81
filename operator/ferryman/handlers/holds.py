"""A held decision (``executor.Executed.held``: made on an index that lagged the cluster,
so only its creates and scale-ups were written) is made again soon, and usually the watch
event that brings the index up to date wakes the Rollout first. A hold that repeats must
not become a silent retry loop (a GET every second, a status that never says why), so:

- the retry backs off: ``retry_in`` (1, 2, 4, 8 s, capped at ``RETRY_CAP``);
- a hold of a Rollout that has no phase yet still gives it one (``kept_status``:
  Progressing, as ``plan.endings.blocked`` does; not the decision's phase, which the
  decision, not having happened, does not have: a first rollout decided Healthy on a
  ghost Deployment has no stable version), so it never sits at ``{observedGeneration: 1}``;
- a hold that persists (``REPORT_AFTER`` consecutive holds, about 7 s when nothing wakes
  the Rollout sooner) is reported: ``Progressing=True`` with reason ``Held`` and a
  message naming what it waits for, and one Warning Event ``Held`` (``newly_reported``).
  The message has no count or clock in it, so the
  status written once is equal to the next held reconcile's and is not written again;
  the next decision that is not held sets Progressing from its phase again
  (``plan.availability``).

The count of consecutive holds is the process's own (``Holds`` on the operator context,
like the daemon's failure count): it only paces retries and reports, never decides
traffic, so a restart that forgets it only delays the report. Pure but ``record`` and
``after``, which count in ``Holds``.
"""

from __future__ import annotations

from datetime import datetime

from ferryman.api.common import ConditionStatus, clip
from ferryman.api.rollout import RolloutPhase, RolloutStatus
from ferryman.plan.conditions import PROGRESSING, REASON_HELD, find, set_condition

FIRST_RETRY = 1.0  # seconds until a held decision is made again the first time
RETRY_CAP = 15.0  # seconds: the longest wait between held decisions
REPORT_AFTER = 3  # consecutive holds after which the hold is reported (Progressing=Held)
REASON = REASON_HELD
MESSAGE_MAX = 1024

Holds = dict[tuple[str, str], int]  # (namespace, Rollout) -> consecutive held reconciles


def retry_in(count: int) -> float:
    """Seconds until a decision held ``count`` times in a row (1 or more; 0 is taken as
    1) is made again: ``FIRST_RETRY`` doubling per hold, capped at ``RETRY_CAP``
    (1, 2, 4, 8, 15, 15, ...)."""
    return float(min(FIRST_RETRY * 2 ** max(count - 1, 0), RETRY_CAP))


def persists(count: int) -> bool:
    """Whether ``count`` consecutive holds are reported (``REPORT_AFTER`` or more)."""
    return count >= REPORT_AFTER


def record(holds: Holds, key: tuple[str, str], held: bool) -> int:
    """Count a reconcile of ``key`` in ``holds``: one more hold, or none (forgotten).
    Returns the consecutive holds now (0 when not held)."""
    if not held:
        holds.pop(key, None)
        return 0
    holds[key] = holds.get(key, 0) + 1
    return holds[key]


def kept_status(
    read: RolloutStatus,
    waits: list[str],
    count: int,
    generation: int,
    now: datetime,
) -> RolloutStatus:
    """The status a held (or route-less) decision writes: ``read`` (the status it was
    decided from, copied), with a phase when it had none (Progressing) and, when this is
    hold number ``count`` of a run that ``persists``, the ``Progressing=True`` condition
    with reason ``Held`` naming ``waits`` (what the hold waits for; empty: not a hold,
    nothing reported). ``now``: the condition's
    transition time."""
    kept = read.model_copy(deep=True)
    if kept.phase is None:
        kept.phase = RolloutPhase.PROGRESSING
    if waits and persists(count):
        kept.conditions = set_condition(
            kept.conditions,
            type=PROGRESSING,
            status=ConditionStatus.TRUE,
            reason=REASON,
            message=clip(
                "held: waiting for "
                + "; ".join(waits)
                + f" (decided again every {RETRY_CAP:g}s at most, or when it changes)",
                MESSAGE_MAX,
            ),
            generation=generation,
            now=now,
        )
    return kept


def after(holds: Holds, key: tuple[str, str], held: bool, delay: float | None) -> float | None:
    """Seconds until ``key``'s next reconcile (None: not due), given ``delay`` (when the
    decision wants it) and whether this reconcile was ``held`` (counted in ``holds``,
    ``record``): a held one is made again within ``retry_in`` of its count."""
    count = record(holds, key, held)
    if not held:
        return delay
    return retry_in(count) if delay is None else min(delay, retry_in(count))


def newly_reported(read: RolloutStatus, kept: RolloutStatus) -> str | None:
    """The message of the ``Held`` report ``kept`` carries and ``read`` (the status as
    read) did not, for one Warning Event per report; None otherwise."""
    new = find(kept.conditions, PROGRESSING)
    old = find(read.conditions, PROGRESSING)
    if new is None or new.reason != REASON:
        return None
    if old is not None and old.reason == REASON and old.message == new.message:
        return None
    return new.message
