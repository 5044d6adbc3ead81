"""The operator process: kopf, configured for ferryman at startup.

Everything that shapes how kopf talks to the API server is set here, in one place:
ferryman's own finalizer and progress-storage prefix (so ferryman never shares
bookkeeping annotations with another kopf operator on the same objects), watch and
request timeouts (a silently dead watch must be noticed), standalone mode (one replica,
no peering), and the liveness endpoint a Deployment's probe uses.

Tests run this module as a subprocess (``python -m ferryman``) so they can SIGKILL and
restart it; nothing here may keep progress in memory that status does not also hold.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

import kopf

PREFIX = "ferryman.dev"
FINALIZER = f"{PREFIX}/finalizer"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Apply ferryman's kopf settings before any watch starts."""
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ferryman", description=__doc__)
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        help="watch only this namespace (repeatable); default: all namespaces "
        "(env FERRYMAN_NAMESPACES, comma-separated)",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get("FERRYMAN_LIVENESS", "http://127.0.0.1:8081/healthz"),
        help="kopf's liveness endpoint (env FERRYMAN_LIVENESS)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    namespaces: list[str] = args.namespace or [
        ns for ns in os.environ.get("FERRYMAN_NAMESPACES", "").split(",") if ns
    ]
    kopf.configure(verbose=args.verbose)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
            standalone=True,
        )
    )
    return 0
