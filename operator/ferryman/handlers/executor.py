"""Execution of one ``plan.Decision``: the ordered writes, behind a small write
Protocol (``Writer``: get / apply / delete / patch_status, which ``kube.Kube`` is).

The order keeps DESIGN.md §2's invariants at every instant:
1. create and scale up Deployments (with their Service and PDB);
2. write the route (weights only ever go to replicas that are already Ready) and its
   companions (``handlers.companions``), then the Services named after the Rollout
   (stable, blue-green preview);
3. scale down and delete (capacity goes only after the route stopped using it);
4. write status.
Before any write, an existing object of the same name must be ours (owner reference to
this Rollout); a foreign one is left untouched and reported in the ``OwnershipConflict``
condition. A write the API server refuses (an invalid object, a forbidden write:
``kube.ApplyRejected``), or a scale-up that fails otherwise, holds back the scale-down but
not the route write (the decision gives weight only to replicas it observed Ready, and a
rollback's route write must never wait), unless the Deployment read just before the
writes has less than the decision counted on (``children.stale``: gone, or fewer Ready
replicas than the index said): then only the creates and scale-ups are written (no
route, nothing removed, status kept) and the decision is made again (``Executed.held``;
backing off, and reported when it persists: ``handlers.holds``).
A refused write is reported in the ``ApplyFailed`` condition, the status message and a
Warning Event; it is tried again after ``APPLY_FAILED_RETRY`` seconds, at the next
analysis round or when something changes, never in a tight loop.

Which objects are read before being written, and when an index entry may decide a skip
instead, is ``handlers.children``'s rule (DESIGN.md §2 at every instant also when kopf's
indexes lag).

The executor posts no Events itself: it returns them (``Executed.events``) for the handler
to post, after the decision's own.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ferryman.api.common import ConditionStatus, clip
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import MAX_METRICS, PLURAL, Rollout, RolloutStatus
from ferryman.errors import describe
from ferryman.handlers import children, companions, holds, shared_routes
from ferryman.handlers.applied import ApplyFailure, Observed
from ferryman.handlers.killpoints import kill_point
from ferryman.handlers.ledger import Ledger, note
from ferryman.handlers.shared_routes import observed_weights
from ferryman.kube.client import Conflict, Rejected
from ferryman.plan import labels, scale
from ferryman.plan.conditions import set_condition
from ferryman.plan.decision import Decision, DeploymentState, Event
from ferryman.plan.route import carried
from ferryman.routing import Router
from ferryman.routing.shared import SharedRouteProblem

log = logging.getLogger(__name__)

OWNERSHIP = "OwnershipConflict"
APPLY_FAILED = "ApplyFailed"
APPLY_FAILED_RETRY = 60.0  # seconds until a refused write is tried again unprompted
HELD_RETRY = holds.FIRST_RETRY  # seconds until a held decision is made again (first time)
MESSAGE_MAX = 2048  # status.message and condition messages (api/)
STATUS_WRITE = "StatusWriteFailed"
# What a status write that the API server refused falls back to: the fields that keep
# traffic decisions safe on the next reconcile (a rollback stays rolled back), without
# the parts that can grow (history, analysis measurements).
ESSENTIAL_STATUS = (
    "phase",
    "pause",
    "stableVersion",
    "candidateVersion",
    "previousStableVersion",
    "currentStep",
    "canaryWeight",
    "stepStartedAt",
    "stageSince",
    "scaleDownAt",
    "weights",
    "rolledBackVersions",
    "handledActionId",
    "lastAction",
    "observedGeneration",
    "planHash",
    "analysisHash",
)


class Writer(Protocol):
    """The writes (and the reads they are conditioned on) the executor makes."""

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        preconditions: dict[str, str] | None = None,
    ) -> None: ...

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> None: ...

    async def patch_json(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any]: ...


@dataclass
class Snapshot:
    """What the handler read before deciding, as the executor needs it."""

    rollout: Rollout  # as read (its status: what the decision was made from)
    router: Router
    route: dict[str, Any] | None  # the route object as read (None: none)
    foreign_route: bool  # that route exists and is someone else's
    blocked: str | None  # why nothing may advance (a foreign route), else None
    by_version: dict[str, ModelVersion]  # served versions' ModelVersions
    deployments: dict[str, DeploymentState]  # by version
    deployment_names: dict[str, str]  # by version
    written: dict[str, Any]  # status as read, dumped: a status equal to it is not written
    now: datetime
    init_image: str | None = None
    # The Rollout's objects as kopf's indexes hold them (trusted entries only): an object
    # there is not read again, and not written when it already carries what the decision
    # wants, unless the decision is a transition (``handlers.children``).
    observed: Observed = field(default_factory=dict)
    # ``route`` is as just read (GET); False: an index entry, read again in a transition.
    route_read: bool = True
    ledger: Ledger | None = None  # this process's reads and writes (``handlers.ledger``)
    fresh: frozenset[str] = frozenset()  # versions whose Deployment is read before a write
    # Every trusted entry, also those ``observed`` lost in a transition: they may only
    # condition a write or a delete on their resourceVersion (``handlers.applied``).
    indexed: Observed = field(default_factory=dict)
    holds: int = 0  # consecutive held reconciles before this one (``handlers.holds``)
    # A shared route (``handlers.shared_routes``) that cannot carry traffic: ``blocked``
    # for the plan, reported in the SharedRoute condition, not as a foreign object.
    route_problem: SharedRouteProblem | None = None


@dataclass
class Executed:
    status: RolloutStatus  # what status now says (written, unless ``refused``)
    wrote: bool  # whether status was written
    refused: Rejected | None = None  # a refused status write, for the daemon to back off
    route_written_at: datetime | None = None
    failures: bool = False  # some write was refused: retry after APPLY_FAILED_RETRY
    # The decision was made on an index that lagged the cluster and was held: decide again
    # (``HELD_RETRY``) once the index has caught up.
    held: bool = False
    # Events to post, in order: a failed status write's, the decision's, then Warnings
    # about foreign objects and refused writes.
    events: list[Event] = field(default_factory=list)


async def execute(kube: Writer, seen: Snapshot, decision: Decision) -> Executed:
    """Write ``decision`` in order (module docstring). Raises ``kube.Conflict`` when the
    Rollout changed since it was read (the status write is conditioned on its
    resourceVersion): the daemon decides again on the fresh state."""
    rollout, router, by_version = seen.rollout, seen.router, seen.by_version
    ns, name, now = rollout.metadata.namespace, rollout.metadata.name, seen.now
    services = {v: mv.metadata.name for v, mv in by_version.items()}
    reverse = {n: v for v, n in services.items()}
    status = decision.status
    problems: list[str] = [f"blocked: {seen.blocked}"] if seen.blocked else []
    held = hold_capacity = False  # a ghost in the index; the route lagging (see below)
    waits: list[str] = []  # what a hold waits for (``handlers.holds``)
    seen = dataclasses.replace(seen, indexed=seen.observed)
    route_obj = children.route_object(seen, decision, services)
    fresh = children.transition(seen, decision)
    # A route from the index that the decision changes is written on the condition of
    # its resourceVersion instead of read first (``children.conditioned_route``).
    conditioned = fresh is not None and children.conditioned_route(seen, route_obj)
    if fresh is not None:
        # Read again: the route, if it came from the index, and the objects of ``fresh``.
        observed = children.fresh_observed(seen, fresh, decision.status.stable_version)
        seen = dataclasses.replace(seen, observed=observed, fresh=fresh)
        if not seen.route_read and not conditioned:
            route = await kube.get(router.api_version, router.kind, ns, name)
            note(seen.ledger, router.kind, ns, name, route)
            # With weights by replica ratio the decision's capacity followed the route as
            # indexed: if it is not the route as it is, no capacity goes this round.
            # A route absent both ways (known absent from our own last read, and absent
            # now) agrees: holding then would hold a first rollout forever.
            hold_capacity = router.capabilities.weights_by_replicas and (
                (route is None) != (seen.route is None)
                or (
                    route is not None
                    and seen.route is not None
                    and router.read(route, reverse) != router.read(seen.route, reverse)
                )
            )
            if hold_capacity:
                waits.append(f"the index to hold {router.kind} {name} as it is")
            theirs = route is not None and not labels.is_owned_by(route, rollout)
            if theirs and not seen.foreign_route:
                problems.append(
                    f"blocked: {router.kind} {name} exists and is not owned by this Rollout"
                )
            seen = dataclasses.replace(seen, route=route, foreign_route=theirs, route_read=True)
    foreign_route, existing_route = seen.foreign_route, seen.route
    if existing_route is not None and not foreign_route:
        read = router.read(existing_route, reverse)
        if read is not None:
            status.weights = observed_weights(router, read, seen.deployments)
    elif foreign_route or existing_route is None:
        # No route of ours carries traffic: status claims none.
        status.weights = None

    route_written_at: datetime | None = None
    theirs_for: set[str] = set()  # versions whose objects turned out to be someone else's
    if decision.deployments is not None:
        # 1. create and scale up
        for version, replicas in decision.deployments.items():
            mv = by_version.get(version)
            if mv is None:
                continue
            current = seen.deployments.get(version)
            if current is None or replicas >= current.replicas:
                before = len(problems)
                try:
                    stale = await children.apply_version(kube, seen, mv, replicas, problems)
                except Exception as e:  # the fresh read failed (a timeout): reported below
                    log.warning("%s/%s: scale-up of %s failed: %s", ns, name, version, e)
                    problems.append(ApplyFailure(f"scale-up of {version} failed: {describe(e)}"))
                    # What the decision counted on could not be verified: decide again.
                    stale = version in seen.deployments
                if any(not isinstance(p, ApplyFailure) for p in problems[before:]):
                    # Someone else's Service or Deployment under the version's name (the
                    # index had not shown it yet): no request goes there (below).
                    theirs_for.add(version)
                if stale:
                    held = True
                    waits.append(
                        f"Deployment {seen.deployment_names.get(version, version)} to have the "
                        f"{current.available if current else 0} Ready replicas the index counted"
                    )
        kill_point("after-scale-up")
    route_ok = not foreign_route and not held
    route_ok = route_ok and not (decision.route and carried(decision.route) & theirs_for)
    if decision.route is not None and route_ok:
        # 2. the route. It is written even when a scale-up above failed: the decision gives
        # weight only to replicas it observed Ready, so the route never needs this
        # reconcile's scale-up, and a rollback's route write must never wait for one. Not
        # when a fresh read found fewer Ready than observed (``held``: decide again).
        route_ok = await shared_routes.write(
            kube, seen, status, decision.route, route_obj, services, conditioned, problems
        )
        # The router's other routes (east-west: ``handlers.companions``), in the same step.
        meta = children.route_metadata(rollout)
        both = await companions.write(
            kube, seen, decision.route, services, meta, fresh is not None, problems
        )
        route_ok = both and route_ok
        route_written_at = datetime.now(UTC)
        kill_point("after-route-write")
        if not router.capabilities.owns_live_service:
            # With a mesh or Gateway API, a Service named after the Rollout still gives
            # in-cluster clients a stable name; with plain Services the route is that one.
            await children.apply_stable_service(kube, seen, status.stable_version, problems)
    elif decision.route is not None:
        route_ok = False
    if rollout.spec.strategy.blue_green is not None and not problems and route_ok:
        await children.sync_preview(kube, seen, by_version.get(decision.preview or ""), problems)
    if decision.deployments is not None and not problems and route_ok and not hold_capacity:
        # 3. scale down and delete: only once the route no longer needs the capacity
        for version, current in seen.deployments.items():
            target = decision.deployments.get(version)
            mv = by_version.get(version)
            if target is None:
                await children.delete_version(kube, seen, seen.deployment_names[version], problems)
            elif target < current.replicas and mv is not None:
                await children.apply_version(kube, seen, mv, target, problems)
    events = list(decision.events)
    held = held or hold_capacity
    if (decision.route is not None and not route_ok) or held:
        # The decision's route was not written, so the decision did not happen: keep the
        # status it was made from (with this round's analysis and the weights as they
        # are) and say why, rather than claim a weight or a promotion the route never got.
        # A hold that persists says what it waits for; a first one still gets a phase.
        kept = holds.kept_status(
            rollout.status,
            waits if held else [],
            seen.holds + 1,
            rollout.metadata.generation,
            now,
        )
        kept.weights, kept.observed_generation = status.weights, status.observed_generation
        report = holds.newly_reported(rollout.status, kept)
        status, events = kept, [Event("Warning", holds.REASON, report)] if report else []

    # 4. status (with the scale subresource's replicas and selector: plan.scale)
    scale.set_scale_status(status, name, seen.deployments)
    failures = [p for p in problems if isinstance(p, ApplyFailure)]
    foreign = [p for p in problems if not isinstance(p, ApplyFailure)]
    status.conditions = (
        set_condition(
            status.conditions,
            type=OWNERSHIP,
            status=ConditionStatus.TRUE if foreign else ConditionStatus.FALSE,
            reason="ForeignObject" if foreign else "AllOwned",
            message="; ".join(foreign) if foreign else "every object ferryman writes is its own",
            generation=rollout.metadata.generation,
            now=now,
        )
        if foreign or any(c.type == OWNERSHIP for c in status.conditions or [])
        else status.conditions
    )
    new_failure = set_apply_failed(rollout, status, failures, now)
    shared = shared_routes.condition(rollout, status, router, seen.route_problem, now)
    companions.condition(rollout, status, router, by_version, now)
    if problems:
        status.message = clip("; ".join(problems), MESSAGE_MAX)
    if any(c.type == STATUS_WRITE for c in status.conditions or []):
        status.conditions = _status_write_condition(rollout, status, None, now)
    kill_point("before-status-write")
    new_status = status.model_dump(by_alias=True, mode="json")
    wrote = new_status != seen.written
    refused: Rejected | None = None
    warnings: list[Event] = []  # StatusWriteFailed first, as it happened
    if wrote:
        refused = await write_status(kube, rollout, status, new_status, now, warnings)
        wrote = refused is None
    warnings += events
    if foreign:
        warnings.append(Event("Warning", OWNERSHIP, "; ".join(foreign)))
    if new_failure:
        warnings.append(Event("Warning", APPLY_FAILED, new_failure))
    warnings += [shared] if shared is not None else []
    return Executed(
        status=status,
        wrote=wrote,
        refused=refused,
        route_written_at=route_written_at,
        failures=bool(failures),
        events=warnings,
        held=held,
    )


def _status_write_condition(
    rollout: Rollout, status: Any, failure: str | None, now: datetime
) -> Any:
    return set_condition(
        status.conditions,
        type=STATUS_WRITE,
        status=ConditionStatus.TRUE if failure else ConditionStatus.FALSE,
        reason="Rejected" if failure else "Written",
        message=failure or "the last status write succeeded",
        generation=rollout.metadata.generation,
        now=now,
    )


async def write_status(
    kube: Writer,
    rollout: Rollout,
    status: Any,
    new_status: dict[str, Any],
    now: datetime,
    warnings: list[Event],
) -> Rejected | None:
    """Write the decision's status. The route was written before this, so a refused
    status write never holds back a rollback's traffic move; the refusal is reported
    (Warning Event ``StatusWriteFailed``, appended to ``warnings``, and, if the API server
    takes it, the condition of the same name with the essential fields of the decision),
    and returned so the daemon retries with a backoff. Returns None when status was
    written; a conflict (HTTP 409: the Rollout changed) is raised as it is."""
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    try:
        await kube.patch_status(
            PLURAL, ns, name, new_status, resource_version=rollout.metadata.resource_version
        )
        return None
    except Conflict:
        raise
    except Exception as error:  # refused (4xx), or failed (5xx, timeout): same fallback
        e = (
            error
            if isinstance(error, Rejected)
            else Rejected(f"status of {PLURAL}/{ns}/{name}", 0, describe(error))
        )
        failure = clip(f"status write refused by the API server: {e}", 1024)
        warnings.append(Event("Warning", STATUS_WRITE, failure))
        status.conditions = _status_write_condition(rollout, status, failure, now)
        dumped = status.model_dump(by_alias=True, mode="json")
        essential = {k: dumped.get(k) for k in ESSENTIAL_STATUS}
        essential["conditions"] = dumped.get("conditions")
        essential["message"] = clip(f"{status.message or ''} ({failure})", 512)
        analysis = dumped.get("analysis")
        if analysis:
            # Counters, evidence clock and schedule, with the latest round only: without
            # them the next reconcile would count from stale values.
            analysis["measurements"] = (analysis.get("measurements") or [])[-MAX_METRICS:]
            essential["analysis"] = analysis
        try:
            await kube.patch_status(
                PLURAL, ns, name, essential, resource_version=rollout.metadata.resource_version
            )
        except Exception as again:
            log.error("essential status of %s/%s failed too: %s", ns, name, describe(again))
        return e


def set_apply_failed(
    rollout: Rollout, status: Any, failures: Sequence[str], now: datetime
) -> str | None:
    """Set the ``ApplyFailed`` condition (True with the refused writes, False once a
    reconcile has none); returns the message of a failure not reported before, for the
    Warning Event (so a write refused again and again posts one Event, not one a minute).
    """
    old = next((c for c in status.conditions or [] if c.type == APPLY_FAILED), None)
    if not failures and old is None:
        return None
    message = clip("; ".join(failures), MESSAGE_MAX) if failures else "every write was accepted"
    status.conditions = set_condition(
        status.conditions,
        type=APPLY_FAILED,
        status=ConditionStatus.TRUE if failures else ConditionStatus.FALSE,
        reason="Refused" if failures else "Applied",
        message=message,
        generation=rollout.metadata.generation,
        now=now,
    )
    reported = old is not None and old.status == ConditionStatus.TRUE and old.message == message
    return message if failures and not reported else None
