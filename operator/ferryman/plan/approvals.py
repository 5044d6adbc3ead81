"""Counting approvals and holding the rollout until there are enough (``spec.gates.approvals``).

An approval counts for a candidate when it names that exact version, and, if the gate
names groups, claims at least one of them, and it was not given before an earlier
attempt at that version ended (a history entry of the version: rolled back, aborted,
superseded by a retarget, ...): each attempt needs its own approvals, so no version
reaches 100% on the strength of a review that predates its failure. Nor does one given
before the objects it approves came into being (``born``): a ModelVersion deleted and
re-created under the same version (perhaps with another artifact), or a Rollout deleted
and re-created under the same name, is a new thing to review. Its claims were
proven by the API server when it was created (the ValidatingAdmissionPolicy of
``api.approval``), so counting trusts them. Each user counts once, however many
approvals they created. ``count`` keeps the tally in ``status.approval`` (what ``kubectl
ferryman status`` shows) whether or not the rollout is at the gate; ``hold`` pauses it
with reason ``AwaitingApproval`` where ``plan.progress`` meets the gate, and ``count``
lifts the wait once enough approvals exist (with a restarted progress clock: time spent
waiting for people is not the candidate's). Pure: no I/O; the clock comes from
``Observed.now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ferryman.api.approval import ApprovalGate, ApprovalPoint, ApprovalStatus
from ferryman.api.common import clip
from ferryman.api.rollout import MAX_MESSAGE, PauseReason, PauseStatus, RolloutPhase, RolloutSpec
from ferryman.api.rollout import RolloutStatus as Status
from ferryman.plan import experiment_stage
from ferryman.plan.capacity import needed
from ferryman.plan.decision import Approval, Event, Observed
from ferryman.plan.stages import Experiment, Preview, Shadow, Stage


def attempt_start(s: Status, version: str) -> datetime | None:
    """When the last earlier attempt at ``version`` ended (its newest ``status.history``
    entry), None if none is in history: approvals and waits from before it belong to
    that attempt."""
    ended = [e.at for e in s.history or [] if e.version == version]
    return max(ended) if ended else None


def born(observed: Observed, version: str | None) -> tuple[datetime | None, ...]:
    """When the objects an approval of ``version`` approves were created: the Rollout
    (``observed.created``) and the candidate's ModelVersion(s) of that version (not the
    ones marked Duplicate; None where unknown). An approval created then or before is
    for an earlier object of the same name or version and does not count (``count``)."""
    mvs = [v.created for v in observed.versions if v.version == version and not v.duplicate]
    return (observed.created, *mvs)


def counting_after(
    s: Status, version: str, born: Iterable[datetime | None] = ()
) -> datetime | None:
    """The instant an approval of ``version`` must be created strictly after to count:
    the latest of ``attempt_start`` and the creation times ``born`` (``born``); None when
    all are unknown."""
    known = [t for t in (attempt_start(s, version), *born) if t is not None]
    return max(known) if known else None


def counts(
    gate: ApprovalGate, approval: Approval, version: str, after: datetime | None = None
) -> bool:
    """Whether ``approval`` counts for candidate ``version`` under ``gate``, the current
    attempt at it and the objects it approves having begun ``after`` (``counting_after``;
    an approval created then or before does not count; one whose creation time is
    unknown does)."""
    if approval.version != version:
        return False
    # Strictly after: creationTimestamps have 1-second resolution, so an approval in the
    # same second as the attempt's end or the object's creation counts as before it. A
    # person reading and approving a version within that second is not realistic; an
    # approval left over from the object's predecessor in that second is what we exclude.
    if after is not None and approval.created is not None and approval.created <= after:
        return False
    return not gate.groups or any(g in gate.groups for g in approval.groups)


def approvers(
    gate: ApprovalGate,
    approvals: Iterable[Approval],
    version: str,
    after: datetime | None = None,
) -> list[str]:
    """The distinct users whose approvals count, sorted."""
    return sorted({a.approved_by for a in approvals if counts(gate, a, version, after)})


def count(
    spec: RolloutSpec,
    s: Status,
    approvals: Iterable[Approval],
    now: datetime,
    events: list[Event],
    born_at: Iterable[datetime | None] = (),
) -> ApprovalStatus | None:
    """The tally for ``s.candidate_version`` (also kept in ``s.approval``); None without a
    gate (then ``s.approval`` is cleared too) or candidate. Approvals count only if
    created after the current attempt began and after ``born_at`` (``born``: the Rollout
    and the candidate's ModelVersion). A wait that the tally now
    satisfies ends here: ``awaitingSince`` cleared, the progress clock restarted, a
    Normal ``Approved`` Event."""
    gate = spec.gates.approvals if spec.gates else None
    version = s.candidate_version
    if gate is None and s.approval is not None:
        s.approval = None
    if gate is None or version is None:
        return None
    after = counting_after(s, version, born_at)
    who = approvers(gate, approvals, version, after)
    prev = s.approval if s.approval is not None and s.approval.version == version else None
    since = prev.awaiting_since if prev else None
    if since is not None and after is not None and since <= after:
        since = None  # the wait of an earlier attempt (aborted while waiting, retried)
    if since is not None and len(who) >= gate.count:
        since = None
        s.step_started_at = now
        events.append(
            Event("Normal", "Approved", f"{version} approved by {', '.join(who[: gate.count])}")
        )
    tally = ApprovalStatus(
        version=version,
        required=gate.count,
        counted=len(who),
        approved_by=who or None,
        awaiting_since=since,
    )
    if tally != s.approval:
        s.approval = tally
    return tally


def waits(spec: RolloutSpec, tally: ApprovalStatus | None, point: ApprovalPoint) -> bool:
    """Whether the gate is at ``point`` and not met yet."""
    gate = spec.gates.approvals if spec.gates else None
    return (
        gate is not None
        and tally is not None
        and gate.at == point
        and tally.counted < tally.required
    )


def short_at_promotion(spec: RolloutSpec, tally: ApprovalStatus | None) -> bool:
    """Whether the gate, wherever it says to wait, is not met when the candidate would
    reach 100%: nothing is promoted then. A BeforeTraffic gate added (or switched to from
    BeforeFull) after traffic moved, or whose approvals were withdrawn, holds here
    instead of letting an edit promote without approval."""
    gate = spec.gates.approvals if spec.gates else None
    return gate is not None and tally is not None and tally.counted < tally.required


def message(spec: RolloutSpec, tally: ApprovalStatus, point: ApprovalPoint | None = None) -> str:
    """The pause message: counted / required, by whom, and how to approve; ``point``
    where it waits (default: where the gate says)."""
    gate = spec.gates.approvals if spec.gates else None
    point = point or (gate.at if gate else ApprovalPoint.BEFORE_FULL)
    where = (
        "before any traffic"
        if point == ApprovalPoint.BEFORE_TRAFFIC
        else ("before promotion to 100%")
    )
    groups = f" of groups {', '.join(gate.groups)}" if gate and gate.groups else ""
    by = f" (by {', '.join(tally.approved_by or [])})" if tally.approved_by else ""
    return clip(
        f"awaiting approval {where}: {tally.counted}/{tally.required} approvals{groups} for "
        f"{tally.version}{by}; `kubectl ferryman approve`",
        MAX_MESSAGE,
    )


def hold(
    spec: RolloutSpec,
    s: Status,
    tally: ApprovalStatus,
    now: datetime,
    point: ApprovalPoint | None = None,
) -> None:
    """Pause with reason ``AwaitingApproval`` at ``point`` (default: the gate's)
    (``status.approval.awaitingSince`` keeps when the wait began, so each reconcile
    writes the same status)."""
    since = tally.awaiting_since or now
    if tally.awaiting_since is None:
        s.approval = tally.model_copy(update={"awaiting_since": since})
    text = message(spec, tally, point)
    s.pause = PauseStatus(reason=PauseReason.AWAITING_APPROVAL, since=since, message=text)
    s.phase, s.message = RolloutPhase.PAUSED, text


def kept_replicas(spec: RolloutSpec, last: Stage | None) -> int:
    """Candidate replicas a wait before 100% keeps after the plan's ``last`` stage: a
    blue-green preview at full size, a shadow at its mirrored share (at least one), an
    A/B test's winner sized for its users, so the candidate and its analysis go on while
    people decide; 0 for other stages (a canary keeps its weight's replicas as the walk
    sized them)."""
    replicas = spec.replicas
    if isinstance(last, Experiment):
        return experiment_stage.replicas_for(spec, experiment_stage.users_of(spec))
    if isinstance(last, Preview):
        return replicas
    if isinstance(last, Shadow):
        return max(needed(replicas, last.percent), 1) if replicas else 0
    return 0


def refusal(tally: ApprovalStatus) -> str:
    """Why ``promote`` cannot pass the gate."""
    return (
        f"awaiting approval: {tally.counted}/{tally.required} approvals for {tally.version}; "
        "promote cannot pass an approval gate (`kubectl ferryman approve`)"
    )
