"""The state machine's inputs and output: what the handler observed (``Observed`` with
its ``VersionRecord``, ``DeploymentState`` and pending user ``Action``) and the
``Decision`` it executes (replicas, route, status, events, when to look again).

Its own module so the handlers, the CLI and tests speak this vocabulary without the state
machine; ``plan.machine.decide`` maps one to the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ferryman.api.rollout import RolloutStatus
from ferryman.plan.route import Route, RouterCapabilities

if TYPE_CHECKING:
    from ferryman.plan.pod_failures import PodFailure


@dataclass(frozen=True)
class Action:
    """A user intent from ``kubectl ferryman`` (annotation with a nonce)."""

    name: str
    id: str


@dataclass(frozen=True)
class VersionRecord:
    """A ModelVersion of the Rollout's model."""

    name: str
    version: str
    duplicate: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    # metadata.creationTimestamp (the API server's clock); None: unknown.
    created: datetime | None = None


@dataclass(frozen=True)
class DeploymentState:
    replicas: int
    available: int


@dataclass(frozen=True)
class Observed:
    versions: tuple[VersionRecord, ...]
    deployments: Mapping[str, DeploymentState]  # by version
    now: datetime
    # What the Rollout's router can do (``ferryman.routing.router_for(spec).capabilities``).
    capabilities: RouterCapabilities
    generation: int = 0
    # The live route as read back (routers whose weights are replica ratios only).
    route: Route | None = None
    action: Action | None = None
    conflict: str | None = None  # another Rollout that already serves this model
    invalid: str | None = None  # a problem the handler found (unknown provider, ...)
    # The route cannot be written (a same-named object belongs to someone else): hold.
    blocked: str | None = None
    # What the failing pods of each served version report, by version (one each,
    # ``plan.pod_failures.pick``); healthy versions are absent.
    pod_failures: Mapping[str, PodFailure] = field(default_factory=dict)
    # The Rollout's ModelApprovals, any version (``plan.approvals`` picks and counts).
    approvals: tuple[Approval, ...] = ()
    # The Rollout's metadata.creationTimestamp (None: unknown): approvals older than the
    # object do not count (``plan.approvals.born``).
    created: datetime | None = None


@dataclass(frozen=True)
class Approval:
    """What the operator reads of one ModelApproval of the Rollout (``plan.approvals``
    counts them; ``handlers.approvals`` indexes them)."""

    name: str
    version: str
    approved_by: str
    groups: tuple[str, ...] = ()
    # metadata.creationTimestamp (the API server's clock); None: unknown (counts).
    created: datetime | None = None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Decision:
    status: RolloutStatus
    # Replicas per served version; versions not listed lose their Deployment. None: leave
    # every Deployment as it is.
    deployments: dict[str, int] | None
    # None: leave the route as it is (nothing is Ready to route to yet, or Invalid).
    route: Route | None
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    # Blue-green: the version the preview Service selects (None: no preview Service).
    preview: str | None = None
    # Whether the pending user action was applied, or why the path taken could not
    # (``decide`` records the verdict in status.lastAction).
    action_applied: bool = False
    action_refusal: str | None = None

    def wake_in(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.requeue_after = (
            seconds if self.requeue_after is None else min(self.requeue_after, seconds)
        )
