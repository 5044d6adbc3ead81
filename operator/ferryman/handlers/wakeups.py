"""Wake a Rollout's daemon: the one way every event that matters to a Rollout (its own
changes, its Deployments' readiness, its model's ModelVersions) reaches it."""

from __future__ import annotations

import asyncio

import kopf


def shared() -> dict[tuple[str, str], asyncio.Event]:
    """The registry to put in the operator-level memo at startup. kopf gives every object
    a shallow copy of that memo, so this one dict is what all handlers share."""
    return {}


def events(memo: kopf.Memo) -> dict[tuple[str, str], asyncio.Event]:
    found: dict[tuple[str, str], asyncio.Event] = memo["wakeups"]
    return found


def wake(memo: kopf.Memo, namespace: str | None, name: str | None) -> None:
    if namespace and name:
        events(memo).setdefault((namespace, name), asyncio.Event()).set()
