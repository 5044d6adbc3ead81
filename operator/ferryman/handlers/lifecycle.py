"""Operator startup and cleanup: kopf settings and the shared API client."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import kopf

from ferryman import errors, metrics
from ferryman.kube.client import Kube

PREFIX = "ferryman.dev"
FINALIZER = f"{PREFIX}/finalizer"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Apply ferryman's kopf settings before any watch starts, and connect the client."""
    apply_settings(settings)
    if getattr(memo, "namespaces", None):
        # Explicit namespaces (namespaced RBAC scope): nothing to discover. Scanning would
        # list namespaces and CRDs cluster-wide, which a Role-only ServiceAccount may not,
        # and kopf retries each refusal for about a minute before it starts serving.
        settings.scanning.disabled = True
    if getattr(memo, "kube", None) is None:
        memo.kube = await Kube.connect()
    settings_ = getattr(memo, "settings", None)
    if settings_ is not None and not getattr(memo, "metrics_served", False):
        try:
            metrics.serve(settings_.metrics_address, settings_.metrics_port)
            memo.metrics_served = True
        except OSError as e:
            logging.getLogger(__name__).error(
                "metrics endpoint %s:%s unavailable: %s",
                settings_.metrics_address,
                settings_.metrics_port,
                errors.describe(e),
            )
    if getattr(memo, "http", None) is None:
        # One HTTP session (one connection pool) for every metrics provider.
        memo.http = aiohttp.ClientSession()


def apply_settings(settings: kopf.OperatorSettings) -> None:
    # Own finalizer and bookkeeping annotations: never shared with another kopf operator.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.peering.standalone = True
    # A watch that the server or a proxy dropped without closing must be re-opened:
    # ask the server to end each watch after 5 minutes, and give up on a silent
    # connection shortly after that.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.posting.level = logging.INFO
    # Backoff between retries of a failing handler: quick at first, capped at a minute.
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]


@kopf.on.cleanup()
async def disconnect(memo: kopf.Memo, **_: Any) -> None:
    kube = getattr(memo, "kube", None)
    if kube is not None:
        await kube.close()
    http = getattr(memo, "http", None)
    if http is not None:
        await http.close()
