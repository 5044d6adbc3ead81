"""Where a candidate's walk through its stages stands (``Walk``), shared by the stage
functions of ``plan.progress`` and the manual pause of ``plan.manual``; and the one rule
both apply when a stage carries no live traffic (``no_live_weight``). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ferryman.api.rollout import RolloutSpec, RolloutStatus
from ferryman.plan.decision import Decision, DeploymentState, Event
from ferryman.plan.evidence import mark_weight_change
from ferryman.plan.route import UserMatch
from ferryman.plan.stages import Stage


@dataclass
class Walk:
    """Where the stage loop stands: the position ``i`` in the plan, the weight the steps
    have ``committed``, and what the stage it stopped at asks for: ``want`` candidate
    replicas, ``mirror`` percent, the ``preview`` Service, the ``users`` an A/B test sends
    to the candidate, whether it is ``waiting_for_pods``. Each stage function advances it
    (returns True: on to the next stage) or stops there (False)."""

    spec: RolloutSpec
    s: RolloutStatus
    d: Decision
    plan: list[Stage]
    now: datetime
    candidate: str
    dep: DeploymentState | None
    i: int
    committed: int
    want: int
    mirror: int = 0
    preview: bool = False
    users: UserMatch | None = None
    waiting_for_pods: bool = False

    @property
    def available(self) -> int:
        return self.dep.available if self.dep else 0

    def ready_for(self, count: int) -> bool:
        return self.dep is not None and self.dep.replicas >= count and self.available >= count


def no_live_weight(
    spec: RolloutSpec,
    s: RolloutStatus,
    now: datetime,
    committed: int,
    candidate: str,
    events: list[Event],
    what: str,
) -> int:
    """Shadow and preview stages carry no live traffic: a candidate that a spec edit put
    on one with live weight loses it at once (a decrease is always allowed)."""
    if committed:
        mark_weight_change(spec, s, now)
        events.append(
            Event("Normal", "Weight", f"candidate {candidate} at 0%: {what} has no live traffic")
        )
    return 0
