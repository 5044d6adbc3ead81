"""A tiny simulated cluster for driving the pure state machine in tests: it applies each
decision the way the handler does and makes pods Ready one tick later (unless a version
is marked broken), so tests read like rollouts."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ferryman.api.rollout import RolloutSpec, RolloutStatus
from ferryman.plan import machine
from ferryman.plan.capacity import selected
from ferryman.plan.decision import Action, Decision, DeploymentState, Event, Observed, VersionRecord
from ferryman.plan.route import Route
from ferryman.routing import router_for

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def canary_spec(steps: list[Any], **extra: Any) -> RolloutSpec:
    data: dict[str, Any] = {
        "model": "fraud",
        "target": {"version": "1.0.0"},
        "replicas": 4,
        "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
        "strategy": {"canary": {"steps": steps}},
        "scaleDownDelaySeconds": 60,
        "progressDeadlineSeconds": 120,
    }
    data.update(extra)
    return RolloutSpec.model_validate(data)


@dataclass
class Sim:
    spec: RolloutSpec
    versions: list[str] = field(default_factory=lambda: ["1.0.0"])
    now: datetime = T0
    status: RolloutStatus = field(default_factory=RolloutStatus)
    replicas: dict[str, int] = field(default_factory=dict)  # desired, as applied
    available: dict[str, int] = field(default_factory=dict)  # Ready pods
    broken: set[str] = field(default_factory=set)  # versions that never get Ready
    unready: dict[str, int] = field(default_factory=dict)  # pods a test made unready
    route: Route | None = None
    events: list[Event] = field(default_factory=list)
    writes: list[tuple[str, Any]] = field(default_factory=list)  # ordered "API writes"
    action_seq: int = 0
    blocked: str | None = None  # the route belongs to someone else
    # Plain Services: (Ready pods behind the live Service before, after) each reconcile.
    capacity: list[tuple[int, int]] = field(default_factory=list)

    def behind(self) -> int:
        """Ready pods the live Service (plain-Service router) selects now."""
        if self.route is None:
            return 0
        return sum(self.available.get(v, 0) for v in selected(self.route, self.replicas))

    def observed(self, action: Action | None = None) -> Observed:
        return Observed(
            versions=tuple(VersionRecord(f"fraud-{v}", v) for v in self.versions),
            deployments={
                v: DeploymentState(r, self.available.get(v, 0)) for v, r in self.replicas.items()
            },
            now=self.now,
            capabilities=router_for(self.spec).capabilities,
            route=self.route,
            action=action,
            generation=1,
            blocked=self.blocked,
        )

    def reconcile(self, action: str | None = None) -> Decision:
        act = None
        if action:
            self.action_seq += 1
            act = Action(action, f"id-{self.action_seq}")
        d = machine.decide(self.spec, self.status, self.observed(act))
        before = self.behind()
        r: int | None
        # Execute in the executor's order (handlers.executor): scale up, route, scale down, status.
        if d.deployments is not None:
            for v, r in d.deployments.items():
                if r >= self.replicas.get(v, 0):
                    if r != self.replicas.get(v):
                        self.writes.append(("scale", (v, r)))
                    self.replicas[v] = r
        if d.route is not None and d.route != self.route:
            self.writes.append(("route", d.route))
            self.route = d.route
        if d.deployments is not None:
            for v in list(self.replicas):
                r = d.deployments.get(v)
                if r is None:
                    self.writes.append(("delete", v))
                    del self.replicas[v]
                    self.available.pop(v, None)
                elif r < self.replicas[v]:
                    self.writes.append(("scale", (v, r)))
                    self.replicas[v] = r
                    self.available[v] = min(self.available.get(v, 0), r)
        self.capacity.append((before, self.behind()))
        self.status = copy.deepcopy(d.status)
        self.events += d.events
        return d

    def tick(self, seconds: float = 1.0) -> Decision:
        """Time passes; pods become Ready; the operator reconciles."""
        self.now += timedelta(seconds=seconds)
        for v, r in self.replicas.items():
            if v not in self.broken:
                self.available[v] = max(0, r - self.unready.get(v, 0))
        return self.reconcile()

    def run_until(self, predicate: Any, limit: int = 200, seconds: float = 1.0) -> None:
        for _ in range(limit):
            if predicate(self):
                return
            self.tick(seconds)
        raise AssertionError(f"not reached; status: {self.status}")


def retarget(sim: Sim, version: str) -> None:
    """What GitOps does: register ``version`` and make it the Rollout's target."""
    sim.versions.append(version)
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": version})}
    )
