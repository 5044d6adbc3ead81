"""What every handler shares, typed: ``OperatorContext`` (the Kubernetes client, the
operator's settings, the HTTP session of the metric providers, the daemons' wake-up
events), created once by the startup handler (``handlers.lifecycle.configure``) and kept
on kopf's memo under one key; ``context(memo)`` is the one way handlers reach it.

kopf gives every object a shallow copy of the operator-level memo, so the one context
object (and its wake-up dict) is what all handlers share. ``Options`` is what
``ferryman.main`` knows before kopf starts (settings, namespaces); it reaches the startup
handler on the memo too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from ferryman.handlers.ledger import Ledger, StatusLedger
from ferryman.kube.client import Kube
from ferryman.settings import Settings

if TYPE_CHECKING:
    from ferryman.handlers.holds import Holds

CONTEXT = "ferryman_context"
OPTIONS = "ferryman_options"

Wakeups = dict[tuple[str, str], asyncio.Event]  # (namespace, Rollout) -> its daemon's event


@dataclass(frozen=True)
class Options:
    """The operator's options from ``python -m ferryman``: its settings (None: the
    handlers run without a settings file, e.g. under ``kopf run``) and the namespaces it
    watches (empty: all)."""

    settings: Settings | None = None
    namespaces: tuple[str, ...] = ()


@dataclass
class OperatorContext:
    """The operator's shared state (module docstring). ``metrics_served``: the metrics
    endpoint is up (a second startup in the same process does not bind it again)."""

    kube: Kube
    http: aiohttp.ClientSession
    options: Options = field(default_factory=Options)
    wakeups: Wakeups = field(default_factory=dict)
    # The notification daemons' wake-up events (``handlers.notifications``).
    notify_wakeups: Wakeups = field(default_factory=dict)
    metrics_served: bool = False
    # What this process last wrote or read of each object (``handlers.observed.Ledger``):
    # an index entry older than that is not trusted.
    ledger: Ledger = field(default_factory=Ledger)
    # The ModelVersion status writes of this process (``handlers.roles``).
    status_writes: StatusLedger = field(default_factory=StatusLedger)
    # Each Rollout's consecutive held reconciles (``handlers.holds``): paces and reports.
    holds: Holds = field(default_factory=dict)

    @property
    def settings(self) -> Settings | None:
        return self.options.settings


class NotStarted(RuntimeError):
    """A handler ran before the startup handler created the operator context."""


def options_memo(options: Options) -> dict[str, Any]:
    """The memo contents ``ferryman.main`` hands to ``kopf.operator``."""
    return {OPTIONS: options}


def options(memo: Mapping[str, Any]) -> Options:
    """The options ``ferryman.main`` put on the memo; the defaults when it put none."""
    found = memo.get(OPTIONS)
    return found if isinstance(found, Options) else Options()


def started(memo: Mapping[str, Any]) -> OperatorContext | None:
    """The operator context, or None before startup created it."""
    found = memo.get(CONTEXT)
    return found if isinstance(found, OperatorContext) else None


def install(memo: dict[str, Any], ctx: OperatorContext) -> OperatorContext:
    """Keep ``ctx`` on the operator-level ``memo`` (startup only)."""
    memo[CONTEXT] = ctx
    return ctx


def context(memo: Mapping[str, Any]) -> OperatorContext:
    """The operator context. Raises ``NotStarted`` when the startup handler has not run
    (the handlers were registered without ``handlers.lifecycle``)."""
    found = started(memo)
    if found is None:
        raise NotStarted(
            "ferryman's operator context is missing: the startup handler "
            "(ferryman.handlers.lifecycle.configure) has not run"
        )
    return found
