"""The route: where traffic goes, as the state machine decides it and as a router reads it
back.

Its own module so routers (``ferryman.routing``) and the CLI share the vocabulary without
importing the state machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.api.rollout import Weights


@dataclass(frozen=True)
class Route:
    """Traffic: ``candidate_weight`` percent to the candidate, the rest to stable."""

    stable: str
    candidate: str | None = None
    candidate_weight: int = 0
    mirror_percent: int = 0

    @property
    def stable_weight(self) -> int:
        return 100 - self.candidate_weight


def weights_of(route: Route | None) -> Weights:
    if route is None:
        return Weights(stable=100, candidate=0, mirror_percent=0)
    return Weights(
        stable=route.stable_weight,
        candidate=route.candidate_weight,
        mirror_percent=route.mirror_percent,
    )
