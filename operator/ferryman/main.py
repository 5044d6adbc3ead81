"""The operator process: ``python -m ferryman``.

Loads the operator's settings (:mod:`ferryman.settings`), registers the handlers
(:mod:`ferryman.handlers`; kopf's own settings are applied at startup in
:mod:`ferryman.handlers.lifecycle`), and runs kopf standalone (one replica, no peering)
with its liveness endpoint, watching all namespaces or the ones given.

Tests run this module as a subprocess (``python -m ferryman``) so they can SIGKILL and
restart it; nothing here may keep progress in memory that status does not also hold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

import kopf

from ferryman import handlers, settings
from ferryman.handlers.context import Options, options_memo


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
    parser.add_argument(
        "--settings", default=None, help="operator settings file (env FERRYMAN_SETTINGS)"
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    assert handlers  # imported for its registrations
    operator_settings = settings.load(args.settings)
    namespaces: list[str] = args.namespace or [
        ns for ns in os.environ.get("FERRYMAN_NAMESPACES", "").split(",") if ns
    ]
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if operator_settings.json_logs else kopf.LogFormat.FULL,
    )
    asyncio.run(
        kopf.operator(
            memo=kopf.Memo(
                options_memo(Options(settings=operator_settings, namespaces=tuple(namespaces)))
            ),
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
            standalone=True,
        )
    )
    return 0
