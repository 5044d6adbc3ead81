"""The operator process: ``python -m ferryman``.

Loads the operator's settings (:mod:`ferryman.settings`), registers the handlers
(:mod:`ferryman.handlers`; kopf's own settings are applied at startup in
:mod:`ferryman.handlers.lifecycle`), and runs kopf standalone (kopf's peering off: with
several replicas, ferryman's Lease decides which one runs kopf) with its liveness
endpoint, watching all namespaces or the ones given.

With leader election on (``--leader-elect``, env FERRYMAN_LEADER_ELECT, or settings
``leaderElection.enabled``; the chart turns it on), the process first waits as a standby
for the Lease (:mod:`ferryman.kube.lease`), answering its liveness and metrics endpoints
itself and making no request but the Lease GET; only the holder starts kopf. Losing the Lease ends
the process at once with exit status 1 (no cleanup that could write), so the Pod
restarts as a standby. Every request carries ``User-Agent: ferryman/<version>
(<identity>)``, identity = settings ``leaderElection.identity``, else $POD_NAME, else
``<hostname>-<pid>``.

Tests run this module as a subprocess (``python -m ferryman``) so they can SIGKILL and
restart it; nothing here may keep progress in memory that status does not also hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

import kopf
from aiohttp import web
from prometheus_client import start_http_server

from ferryman import handlers, metrics, settings
from ferryman.handlers.context import Options, options_memo
from ferryman.kube import client as kube_client
from ferryman.kube.lease import Elector, LeaseLost, Timings

log = logging.getLogger(__name__)
# Exit status when the Lease is lost: the Pod restarts and waits as a standby.
LEASE_LOST_EXIT = 1


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
    parser.add_argument(
        "--leader-elect",
        action="store_true",
        default=None,
        help="run only while holding the Lease (env FERRYMAN_LEADER_ELECT; "
        "settings leaderElection)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def identity(configured: str, environ: dict[str, str] | None = None) -> str:
    """This replica's holder identity: ``configured``, else $POD_NAME (the chart sets it
    from the downward API), else ``<hostname>-<pid>``."""
    env = os.environ if environ is None else environ
    return configured or env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@contextlib.asynccontextmanager
async def standby_endpoints(
    liveness: str, metrics_address: str = "", metrics_port: int = 0
) -> AsyncIterator[None]:
    """While waiting for the Lease: answer 200 on the liveness URL's path (a standby is
    alive and ready to take over; the probes pass and a rolling update completes), and
    serve the metrics endpoint when a port is set (so a scrape of the standby succeeds:
    no target-down alert for a healthy standby). Both ports are freed on leaving, for
    kopf's liveness endpoint and the leader's metrics server."""
    parts = urlsplit(liveness)
    app = web.Application()

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app.router.add_get(parts.path or "/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, parts.hostname, parts.port or 80)
    await site.start()
    server = None
    if metrics_port:
        try:
            server, _thread = start_http_server(
                metrics_port, addr=metrics_address, registry=metrics.REGISTRY
            )
        except OSError as e:
            log.error("standby metrics endpoint %s:%s: %s", metrics_address, metrics_port, e)
    try:
        yield
    finally:
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        await runner.cleanup()


async def elected(
    operator: Callable[[], Coroutine[Any, Any, None]],
    opts: settings.Settings,
    who: str,
    liveness: str,
) -> int:
    """Wait for the Lease, then run ``operator()`` while holding it (module docstring).
    Returns 0 when the operator stopped (the Lease is released); exits the process with
    LEASE_LOST_EXIT when the Lease is lost."""
    le = opts.leader_election
    namespace = le.namespace or opts.namespace
    if not namespace:
        log.error("leader election needs a namespace: leaderElection.namespace or namespace")
        return 2
    kube = await kube_client.Kube.connect()
    try:
        elector = Elector(
            kube.api,
            name=le.lease_name,
            namespace=namespace,
            identity=who,
            timings=Timings(
                le.lease_duration_seconds, le.renew_deadline_seconds, le.retry_period_seconds
            ),
        )
        async with standby_endpoints(liveness, opts.metrics_address, opts.metrics_port):
            await elector.acquire()
        try:
            await elector.hold(operator())
        except LeaseLost as e:
            log.error("%s; exiting so that no second writer runs", e)
            logging.shutdown()
            sys.stdout.flush()
            os._exit(LEASE_LOST_EXIT)
        await elector.release()
    finally:
        await kube.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    assert handlers  # imported for its registrations
    operator_settings = settings.load(args.settings)
    if args.leader_elect:
        operator_settings = operator_settings.model_copy(
            update={
                "leader_election": operator_settings.leader_election.model_copy(
                    update={"enabled": True}
                )
            }
        )
    who = identity(operator_settings.leader_election.identity)
    kube_client.identify(who)
    namespaces: list[str] = args.namespace or [
        ns for ns in os.environ.get("FERRYMAN_NAMESPACES", "").split(",") if ns
    ]
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if operator_settings.json_logs else kopf.LogFormat.FULL,
    )

    def operator() -> Coroutine[Any, Any, None]:
        return kopf.operator(
            memo=kopf.Memo(
                options_memo(Options(settings=operator_settings, namespaces=tuple(namespaces)))
            ),
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness,
            standalone=True,
        )

    if operator_settings.leader_election.enabled:
        return asyncio.run(elected(operator, operator_settings, who, args.liveness))
    asyncio.run(operator())
    return 0
