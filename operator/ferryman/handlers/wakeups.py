"""Wake a Rollout's daemon: the one way every event that matters to a Rollout (its own
changes, its Deployments' readiness, its model's ModelVersions) reaches it. The events
live in the operator context (``handlers.context``), shared by every handler."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ferryman.handlers.context import Wakeups, context


def events(memo: Mapping[str, Any]) -> Wakeups:
    """The daemons' wake-up events by (namespace, Rollout name). Raises
    ``context.NotStarted`` before startup."""
    return context(memo).wakeups


def wake(memo: Mapping[str, Any], namespace: str | None, name: str | None) -> None:
    if namespace and name:
        events(memo).setdefault((namespace, name), asyncio.Event()).set()
