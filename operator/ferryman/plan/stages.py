"""A strategy as a list of stages: ``SetWeight``, ``Pause``, ``Shadow``, ``Preview``,
``Stop`` and ``Experiment``; promotion follows the last one.

Its own module so the CLI can show the plan without importing the state machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ferryman.api.rollout import RolloutSpec
from ferryman.plan.durations import parse_duration


@dataclass(frozen=True)
class SetWeight:
    weight: int


@dataclass(frozen=True)
class Pause:
    duration: timedelta | None
    text: str


@dataclass(frozen=True)
class Shadow:
    """Mirror ``percent`` of live traffic to the candidate for ``duration``."""

    percent: int
    duration: timedelta
    text: str


@dataclass(frozen=True)
class Preview:
    """Blue-green: the candidate at full size behind the preview Service, mirrored."""

    mirror: int
    auto_after: timedelta | None


@dataclass(frozen=True)
class Stop:
    """Shadow with ``then: stop``: remove the candidate and report; stable untouched."""


@dataclass(frozen=True)
class Experiment:
    """abTest: the candidate serves the users ``plan.experiment`` matches until a verdict,
    or ``duration`` (None: no time limit)."""

    duration: timedelta | None
    text: str


Stage = SetWeight | Pause | Shadow | Preview | Stop | Experiment


def stages(spec: RolloutSpec) -> list[Stage]:
    """The strategy as a list of stages; promotion follows the last one."""
    strategy = spec.strategy

    def canary(steps: list[Any]) -> list[Stage]:
        out: list[Stage] = []
        for step in steps:
            if step.set_weight is not None:
                out.append(SetWeight(step.set_weight))
            else:
                d = step.pause.duration
                out.append(Pause(parse_duration(d) if d else None, d or ""))
        return out

    if strategy.canary is not None:
        return canary(list(strategy.canary.steps))
    if strategy.blue_green is not None:
        bg = strategy.blue_green
        auto = bg.auto_promotion_seconds
        return [
            Preview(
                bg.preview_mirror_percent or 0,
                timedelta(seconds=auto) if auto is not None else None,
            )
        ]
    if strategy.ab_test is not None:
        d = strategy.ab_test.duration
        return [Experiment(parse_duration(d) if d else None, d or "")]
    assert strategy.shadow is not None
    sh = strategy.shadow
    first: list[Stage] = [Shadow(sh.mirror_percent, parse_duration(sh.duration), sh.duration)]
    if sh.then == "canary":
        return first + canary(list(sh.steps or []))
    if sh.then == "stop":
        return [*first, Stop()]
    return first
