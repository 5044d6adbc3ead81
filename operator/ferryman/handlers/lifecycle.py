"""Operator startup and cleanup: kopf settings, and the operator context
(``handlers.context``: the shared API client, HTTP session and wake-up events)."""

from __future__ import annotations

import logging
import os
from typing import Any

import aiohttp
import kopf

from ferryman import errors, metrics
from ferryman.handlers import observed, pods
from ferryman.handlers.context import OperatorContext, install, options, started
from ferryman.kube.client import Kube

PREFIX = "ferryman.dev"
FINALIZER = f"{PREFIX}/finalizer"


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base, not kept. It only serves on.create/update/resume handlers, and
    ferryman has none (its only changing handlers are on.delete); the default storage
    still patches its annotation onto each Rollout at every spec or annotation change,
    racing the reconcile's status write (a 409 and a second reconcile, issue 12), and
    onto each ModelVersion when it is first served. Every event is then a "creation"
    with no handler, which kopf skips."""

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply ferryman's kopf settings before any watch starts, and create the operator
    context (connect the client) unless an earlier startup in this process did."""
    apply_settings(settings)
    opts = options(memo)
    if opts.namespaces:
        # Explicit namespaces (namespaced RBAC scope): nothing to discover. Scanning would
        # list namespaces and CRDs cluster-wide, which a Role-only ServiceAccount may not,
        # and kopf retries each refusal for about a minute before it starts serving.
        settings.scanning.disabled = True
    ctx = started(memo)
    if ctx is None:
        kube = await Kube.connect()
        # One HTTP session (one connection pool) for every metrics provider.
        ctx = install(memo, OperatorContext(kube=kube, http=aiohttp.ClientSession(), options=opts))
    settings_ = ctx.settings
    if settings_ is not None and not ctx.metrics_served:
        try:
            metrics.serve(settings_.metrics_address, settings_.metrics_port)
            ctx.metrics_served = True
        except OSError as e:
            logging.getLogger(__name__).error(
                "metrics endpoint %s:%s unavailable: %s",
                settings_.metrics_address,
                settings_.metrics_port,
                errors.describe(e),
            )


def apply_settings(settings: kopf.OperatorSettings) -> None:
    # Own finalizer and bookkeeping annotations: never shared with another kopf operator.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.peering.standalone = True
    # A watch that the server or a proxy dropped without closing must be re-opened:
    # ask the server to end each watch after 5 minutes (FERRYMAN_WATCH_TIMEOUT_SECONDS
    # shortens it: the expired-watch tests), and give up on a silent connection shortly
    # after that.
    settings.watching.server_timeout = watch_timeout()
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 10
    # Only ferryman's Deployments, Services, budgets, routes and pods, selected by the server.
    observed.label_selectors(settings)
    # Only ferryman's pods (the failing ones are indexed, handlers.pods).
    pods.label_selectors(settings)
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.posting.level = logging.INFO
    # Backoff between retries of a failing handler: quick at first, capped at a minute.
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]


WATCH_TIMEOUT_ENV = "FERRYMAN_WATCH_TIMEOUT_SECONDS"


def watch_timeout(environ: dict[str, str] | None = None) -> int:
    """Seconds the API server keeps each watch open (``timeoutSeconds``): 300, or a
    positive integer from $FERRYMAN_WATCH_TIMEOUT_SECONDS. Raises ValueError otherwise."""
    raw = (os.environ if environ is None else environ).get(WATCH_TIMEOUT_ENV, "300")
    value = int(raw)
    if value <= 0:
        raise ValueError(f"{WATCH_TIMEOUT_ENV} must be a positive number of seconds: {raw!r}")
    return value


@kopf.on.cleanup()
async def disconnect(memo: kopf.Memo, **_: Any) -> None:
    ctx = started(memo)
    if ctx is not None:
        await ctx.kube.close()
        await ctx.http.close()
