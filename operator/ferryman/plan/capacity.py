"""Capacity arithmetic: how many Ready replicas carry a weight, and the plain-Service
rules where the weight *is* the replica ratio.

Routers with weights need ``needed(replicas, w)`` Ready candidate replicas before weight
``w`` is written (``supported`` is the inverse). Plain Services (routers that declare
``RouterCapabilities.weights_by_replicas``, read from ``Observed.capabilities``) have no
weights to write: the live Service selects pods, so the stable is sized for what the
candidate's Ready replicas really carry (``ratio_sizing``), the split is read from Ready
pods (``ratio_weights``), and ``keep_capacity`` checks every decision against the live
Service as read back so that no write leaves fewer Ready pods behind it than
``min(now, replicas)`` (DESIGN.md §2). Its own module because the state machine, the
handler and the unit simulator all ask the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ferryman.api.rollout import RolloutSpec, Weights
from ferryman.plan.decision import Decision, DeploymentState, Observed
from ferryman.plan.route import Route, weights_of


def selected(route: Route, versions: Iterable[str]) -> set[str]:
    """The versions whose pods the plain-Service router's live Service selects for
    ``route``: the stable only (candidate weight 0), the candidate only (100), else the
    pods of every served version (``versions``: those with a Deployment)."""
    if route.candidate is None or route.candidate_weight <= 0:
        return {route.stable}
    if route.candidate_weight >= 100:
        return {route.candidate}
    return {route.stable, route.candidate, *versions}


def ratio_weights(route: Route, deployments: Mapping[str, DeploymentState]) -> Weights:
    """Plain Services: the real split, i.e. the share of Ready pods behind the live
    Service (``route`` as read back from it) that belong to the stable version; the
    candidate weight is the rest (percent, summing to 100). With no Ready pod behind
    the Service, the route's nominal weights."""
    behind = selected(route, deployments)
    ready = {v: deployments[v].available if v in deployments else 0 for v in behind}
    total = sum(ready.values())
    if total <= 0:
        return weights_of(route)
    stable = round(100 * ready.get(route.stable, 0) / total)
    return Weights(stable=stable, candidate=100 - stable, mirror_percent=0)


def needed(replicas: int, weight: int) -> int:
    """Ready replicas a backend needs to carry ``weight`` percent of traffic."""
    return math.ceil(replicas * weight / 100)


def supported(replicas: int, available: int) -> int:
    """The largest weight ``available`` Ready replicas can carry."""
    if replicas <= 0:
        return 100
    return max(0, min(100, available * 100 // replicas))


def ratio_sizing(
    spec: RolloutSpec, stable: str, candidate: str, committed: int, want: int, available: int
) -> tuple[Route, dict[str, int]]:
    """Plain-Service canary at step weight ``committed``: the candidate's Ready replicas
    (``available``, at most what the weight needs) carry weight, the stable is sized for
    the rest, so Ready stable + carrying candidate replicas = ``replicas``; the route's
    weight follows what the candidate really carries (0 once it has no Ready pod)."""
    replicas = spec.replicas
    carried = min(available, needed(replicas, committed))
    weight = committed if carried >= needed(replicas, committed) else supported(replicas, carried)
    weight = min(weight, committed)
    route = Route(stable=stable, candidate=candidate, candidate_weight=weight)
    sizes = {stable: replicas - carried, candidate: max(want, needed(replicas, committed))}
    return route, sizes


HOLD_NOTE = "the live Service keeps its current pods"


def keep_capacity(spec: RolloutSpec, observed: Observed, d: Decision) -> None:
    """Plain Services: no decision removes Ready capacity behind the live Service
    below ``replicas`` (DESIGN.md §2). The Ready pods behind it now (``observed.route``
    is the live Service as read back) are the reference; if the decided route and sizes
    would leave fewer than ``min(that, replicas)`` Ready pods behind it, every version
    it selects now stays selected and keeps its replicas (nothing it selects shrinks),
    and a version it does not select yet is not scaled up (its pods would take traffic
    with no weight), until the decided selection is Ready at that size; the Deployments
    the decision scales up come up meanwhile. Modifies ``d`` in place."""
    live, route, sizes = observed.route, d.route, d.deployments
    if d.status.message and HOLD_NOTE in d.status.message:
        d.status.message = d.status.message.split(f"; {HOLD_NOTE}")[0].split(HOLD_NOTE)[0]
    if live is None or route is None or sizes is None:
        return
    deps = observed.deployments
    ready = {v: dep.available for v, dep in deps.items()}
    before = selected(live, deps) & set(deps)
    floor = min(sum(ready[v] for v in before), spec.replicas)

    def capacity(r: Route, target: Mapping[str, int]) -> int:
        return sum(min(ready.get(v, 0), target.get(v, 0)) for v in selected(r, target))

    if capacity(route, sizes) >= floor:
        return
    held = dict(sizes)
    for v in before:
        held[v] = max(held.get(v, 0), deps[v].replicas)
    keep = route
    if not before <= selected(route, held):
        others = sorted(before - {route.stable})
        other = route.candidate if route.candidate in before else others[0] if others else None
        if other is not None:
            weight = route.candidate_weight if other == route.candidate else 0
            if weight <= 0 or weight >= 100:
                share = ready.get(other, 0) * 100 // max(sum(ready[v] for v in before), 1)
                weight = max(1, min(99, share))
            keep = Route(stable=route.stable, candidate=other, candidate_weight=weight)
    for v in list(held):
        if v not in before and v != route.stable and v in selected(keep, held):
            held[v] = min(held[v], deps[v].replicas if v in deps else 0)
    d.route, d.deployments = keep, held
    stable_ready = ready.get(route.stable, 0)
    note = (
        f"{HOLD_NOTE} until {route.stable} has {spec.replicas} Ready replicas "
        f"({stable_ready} Ready)"
    )
    d.status.message = f"{d.status.message}; {note}" if d.status.message else note
    d.wake_in(1.0)
