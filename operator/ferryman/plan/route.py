"""The route: where traffic goes, as the state machine decides it and as a router reads it
back; and what a router can do (``RouterCapabilities``), which the state machine reads from
``Observed`` instead of asking which router the spec names.

Its own module so routers (``ferryman.routing``) and the CLI share the vocabulary without
importing the state machine, and so the pure plan can read capabilities without importing
the routers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferryman.api.rollout import Weights


@dataclass(frozen=True)
class RouterCapabilities:
    """What a router can do; each router declares its own (``ferryman.routing``), the
    handler passes them to the plan in ``Observed.capabilities``.

    - ``mirror``: it can mirror a percentage of traffic to the candidate (shadow,
      blue-green preview mirroring). The CRD refuses mirroring for routers that cannot.
    - ``weights_by_replicas``: it has no weights to write; the weight *is* the ratio of
      Ready pods behind one live Service (``plan.capacity``: the stable is sized for what
      the candidate carries, the split is read from Ready pods, no decision drops Ready
      capacity behind the live Service).
    - ``header_match``: its data plane can route by request header or cookie (the abTest
      strategy, ``plan.experiment``, refuses a router without it).
    - ``owns_live_service``: the route object *is* the Service named after the Rollout;
      otherwise the executor writes that Service itself (selecting the stable version) so
      in-cluster clients keep one stable name.
    """

    mirror: bool
    weights_by_replicas: bool
    header_match: bool
    owns_live_service: bool


@dataclass(frozen=True)
class UserMatch:
    """The requests an A/B test sends to the candidate (``plan.experiment``): those whose
    header ``header`` (lowercase; ``cookie`` for cookies) equals ``exact``, or fully
    matches the RE2 pattern ``regex`` (anchored ``^...$``). ``share``: the expected share
    of users for a percent-of-users split (None for an explicit cohort); not in the route
    object, so not compared (a route read back equals the one written)."""

    header: str
    exact: str | None = None
    regex: str | None = None
    share: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Route:
    """Traffic: ``candidate_weight`` percent to the candidate, the rest to stable; with
    ``users`` (an A/B test), the requests it matches to the candidate and every other
    request to stable (``candidate_weight`` and ``mirror_percent`` are then 0)."""

    stable: str
    candidate: str | None = None
    candidate_weight: int = 0
    mirror_percent: int = 0
    users: UserMatch | None = None

    @property
    def stable_weight(self) -> int:
        return 100 - self.candidate_weight


def carried(route: Route) -> set[str]:
    """The versions ``route`` sends requests to: by weight, by mirror or by an A/B match."""
    out = {route.stable} if route.stable_weight > 0 else set()
    if route.candidate is not None and (
        route.candidate_weight > 0 or route.mirror_percent > 0 or route.users is not None
    ):
        out.add(route.candidate)
    return out


def weights_of(route: Route | None) -> Weights:
    if route is None:
        return Weights(stable=100, candidate=0, mirror_percent=0)
    return Weights(
        stable=route.stable_weight,
        candidate=route.candidate_weight,
        mirror_percent=route.mirror_percent,
    )
