"""The route of one reconcile: read it (``observe``), write the decision's traffic onto it
(``write``), and report a shared route that cannot carry it (``condition``).

A route ferryman created is its own and is written by server-side apply, like every other
object it owns (``handlers.applied``). A route someone else owns is never written, with
one exception that the Rollout asks for by name (issue 15 §1): a route named by
``gatewayAPI.httpRoute`` or ``istio.virtualService`` (``routing.shared``), of which
ferryman changes only the named rules' backends and its own mirror, by read-modify-write:
the JSON patch of those fields (``SharingRouter.patch``) behind a ``test`` of the
resourceVersion read; when the route changed in between (HTTP 409, or the failed test's
422 with the route at another resourceVersion when read again) it is read again and the
patch made afresh, at most ``ATTEMPTS`` times per reconcile, then reported
(``ApplyFailed``) and tried again later. A server-side apply there would take over every
rule (the lists are atomic), so there is none.

A shared route is read (GET) at every reconcile (kopf's indexes hold only ferryman's own
objects), and every change of it wakes the Rollouts that name it
(``handlers.shared_wakeups``), so a hand edit is seen at once:
- the named rules' weights or ferryman's mirror changed: written back (``patch_ops`` is
  not empty), as a hand edit of a route ferryman owns is applied back;
- the route deleted, or a named rule gone (renamed, removed): the Rollout is blocked
  (``plan.endings.blocked``: it holds its phase and its traffic where it is, moves no
  weight, promotes and scales down nothing) and the ``SharedRoute`` condition says what
  is missing, with a Warning Event when that is new. ferryman never creates the route, so
  traffic is never sent 100% anywhere by a route it rebuilt; once the rule is back the
  Rollout carries on and writes its weights there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import Rollout
from ferryman.handlers.applied import ApplyFailure, apply_owned
from ferryman.handlers.ledger import Ledger, known_absent, note
from ferryman.kube.client import ApplyRejected, Conflict
from ferryman.plan import labels, serving
from ferryman.plan.capacity import ratio_weights
from ferryman.plan.conditions import set_condition
from ferryman.plan.decision import DeploymentState, Event
from ferryman.plan.route import Route, weights_of
from ferryman.routing import Router, SharingRouter, shared_of
from ferryman.routing.shared import SharedRouteProblem, find_rules, test_version

if TYPE_CHECKING:
    from ferryman.handlers.executor import Snapshot, Writer

log = logging.getLogger(__name__)

ATTEMPTS = 3  # read-modify-writes of a shared route per reconcile before it is reported
CONDITION = "SharedRoute"
Obj = dict[str, Any]


@dataclass(frozen=True)
class RouteSeen:
    """The route as a reconcile found it."""

    route: Obj | None  # as read or indexed (None: none)
    read: bool  # read (GET) in this reconcile, not an index entry
    foreign: bool  # a route of the Rollout's name that is someone else's (never shared)
    blocked: str | None  # why nothing may advance (for ``plan.machine``), else None
    problem: SharedRouteProblem | None = None  # a shared route that cannot carry traffic


async def observe(
    kube: Writer, ledger: Ledger | None, router: Router, rollout: Rollout, known: Any, now: float
) -> RouteSeen:
    """The Rollout's route: its own from kopf's index (``known``, by (kind, name)) or read
    when the index has none and this process's last read did not find it absent
    (``ledger.known_absent``, ``now`` monotonic); a shared route is always read. Raises
    what the read raises."""
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    shared = shared_of(router)
    if shared is not None and shared.shared is not None:
        ref = shared.shared
        found = await kube.get(router.api_version, router.kind, ns, ref.name)
        problem = check(found, router.kind, ref.name, ref.field, shared)
        return RouteSeen(found, True, False, str(problem) if problem else None, problem)
    existing = known.get((router.kind, name))
    read = existing is None and not known_absent(ledger, router.kind, ns, name, now)
    if read:
        existing = await kube.get(router.api_version, router.kind, ns, name)
        note(ledger, router.kind, ns, name, existing)
    foreign = existing is not None and not labels.is_owned_by(existing, rollout)
    blocked = (
        f"{router.kind} {name} exists and is not owned by this Rollout: ferryman cannot "
        "route traffic, so nothing advances, promotes or scales down until it is removed "
        "or renamed"
        if foreign
        else None
    )
    return RouteSeen(existing, read, foreign, blocked)


def check(
    found: Obj | None, kind: str, name: str, field: str, router: SharingRouter
) -> SharedRouteProblem | None:
    """Why the shared route ``found`` (as read; None: absent) cannot carry the Rollout's
    traffic, None when every named rule is there (``routing.shared.find_rules``)."""
    if found is None:
        return SharedRouteProblem(
            "RouteMissing",
            f"{kind} {name} (spec.trafficRouting.{field}) does not exist (deleted?): ferryman "
            "never creates a route it was asked to share; it holds traffic where it is until "
            "the route is back",
        )
    assert router.shared is not None
    try:
        find_rules(found, router.shape.rules_key, router.shared.rules)
    except SharedRouteProblem as e:
        return e
    return None


async def write(
    kube: Writer,
    seen: Snapshot,
    status: Any,
    route: Route,
    route_obj: Obj | None,
    services: Mapping[str, str],
    conditioned: bool,
    problems: list[str],
) -> bool:
    """Write ``route`` (the decision's) onto the Rollout's route: ``route_obj`` by
    server-side apply on a route of its own (``applied.apply_owned``, ``conditioned`` on
    the indexed resourceVersion or after a read), or the named rules of a shared route
    (``write_shared``). Sets ``status.weights`` to what the route carries afterwards (a
    write not made leaves them as they were, but a conditioned one that failed, whose
    route is read again). Returns whether the route carries ``route`` now."""
    rollout, router = seen.rollout, seen.router
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    reverse = {n: v for v, n in services.items()}
    shared = shared_of(router)
    if shared is not None:
        port = serving.service_port(rollout)
        done = await write_shared(kube, shared, ns, seen.route, route, services, port, problems)
        if done is not None:
            status.weights = observed_weights(router, router.read(done, reverse), seen.deployments)
        return done is not None
    assert route_obj is not None
    existing = seen.route
    applied = await apply_owned(
        kube,
        rollout,
        route_obj,
        problems,
        existing=existing if seen.route_read else None,
        read=seen.route_read,
        observed={(router.kind, name): existing} if existing is not None else {},
        ledger=seen.ledger,
        fresh=conditioned,
    )
    if applied is None and conditioned:
        # Not written: status reports the route as it is now, not as indexed.
        now_route = await kube.get(router.api_version, router.kind, ns, name)
        note(seen.ledger, router.kind, ns, name, now_route)
        ours = now_route is not None and labels.is_owned_by(now_route, rollout)
        read = router.read(now_route, reverse) if ours and now_route is not None else None
        status.weights = observed_weights(router, read, seen.deployments)
    if applied is not None:
        status.weights = observed_weights(router, router.read(applied, reverse), seen.deployments)
    return applied is not None


async def write_shared(
    kube: Writer,
    router: SharingRouter,
    namespace: str,
    current: Obj | None,
    route: Route,
    services: Mapping[str, str],
    port: int,
    problems: list[str],
) -> Obj | None:
    """Make the named rules of the shared route carry ``route`` (module docstring):
    ``current`` is the route as read in this reconcile (None: absent). Returns the route
    as it is afterwards (unwritten when it carries ``route`` already), None when it could
    not be written (an ``ApplyFailure`` in ``problems`` says why). Raises what a read
    raises."""
    assert router.shared is not None
    name, kind = router.shared.name, router.kind
    for _ in range(ATTEMPTS):
        if current is None:
            problems.append(ApplyFailure(f"{kind} {name} is gone: traffic not moved"))
            return None
        try:
            ops = router.patch(current, route, services, port)
        except SharedRouteProblem as e:
            problems.append(ApplyFailure(str(e)))
            return None
        if not ops:
            return current
        version = (current.get("metadata") or {}).get("resourceVersion")
        try:
            return await kube.patch_json(
                router.api_version, kind, namespace, name, [test_version(current), *ops]
            )
        except Conflict:
            log.info("%s %s/%s changed before our patch; reading it again", kind, namespace, name)
        except ApplyRejected as e:
            again = await kube.get(router.api_version, kind, namespace, name)
            if again is not None and (again.get("metadata") or {}).get("resourceVersion") == (
                version
            ):
                problems.append(
                    ApplyFailure(f"the API server refused the patch of {kind} {name}: {e.reason}")
                )
                return None
            log.info("%s %s/%s changed before our patch; patching it again", kind, namespace, name)
            current = again
            continue
        current = await kube.get(router.api_version, kind, namespace, name)
    problems.append(
        ApplyFailure(f"{kind} {name} changed under each of {ATTEMPTS} patches: tried again later")
    )
    return None


def condition(
    rollout: Rollout, status: Any, router: Router, problem: SharedRouteProblem | None, now: datetime
) -> Event | None:
    """Set the ``SharedRoute`` condition of a Rollout that names a shared route (False
    with the problem's reason and message while its route or a named rule is missing,
    True otherwise); returns the Warning Event of a problem not reported before."""
    shared = shared_of(router)
    if shared is None or shared.shared is None:
        return None
    old = next((c for c in status.conditions or [] if c.type == CONDITION), None)
    ref = shared.shared
    message = (
        str(problem)
        if problem is not None
        else f"ferryman manages {', '.join(ref.rules)} of {router.kind} {ref.name}"
    )
    status.conditions = set_condition(
        status.conditions,
        type=CONDITION,
        status=ConditionStatus.FALSE if problem else ConditionStatus.TRUE,
        reason=problem.reason if problem else "Managed",
        message=message,
        generation=rollout.metadata.generation,
        now=now,
    )
    if problem is None or (old is not None and old.message == message):
        return None
    return Event("Warning", problem.reason, message)


def observed_weights(
    router: Router, read: Route | None, deployments: dict[str, DeploymentState]
) -> Any:
    """Weights as the route really carries them: with plain Services the share of Ready
    pods behind the live Service, with a mesh or Gateway API the route's weights; None
    without a route of ours."""
    if read is None:
        return None
    if router.capabilities.weights_by_replicas:
        return ratio_weights(read, deployments)
    return weights_of(read)
