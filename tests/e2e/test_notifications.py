"""Webhook notifications end to end: the real operator (a subprocess, as the chart's
ServiceAccount) notifies a receiver on 127.0.0.1 (an aiohttp server in the test) that
fails the first two deliveries with HTTP 500; the operator is SIGKILLed between them and
a fresh one resumes the retry from status. Every event (Promoted, PausedForAnalysis,
Aborted, Rejected, RolledBack with the measurement that caused it, from the real
Prometheus) arrives at least once, each request signed with the endpoint's HMAC key, and
the ids de-duplicate to exactly the events of the Rollout's status."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from e2e import rollouts as r
from ferryman.api.rollout import Rollout
from ferryman.plan import notifications as plan
from ferryman.plan import notify_payload
from harness import rbac
from harness.kube import Cluster, wait_for
from harness.net import free_port
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]

KEY = "e2e-signing-key-0123456789"
SECRET = rbac.NOTIFY_SECRETS[0]
ENDPOINT = "e2e-hook"


class Receiver:
    """An aiohttp server on 127.0.0.1 in a thread of its own: answers 500 to the first
    ``fail_first`` requests, 204 after; records every request (status it was given,
    headers, raw body)."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.port = free_port()
        self.requests: list[tuple[int, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            status = 500 if len(self.requests) < self.fail_first else 204
            self.requests.append((status, dict(request.headers), body))
        return web.Response(status=status, text="receiver down" if status == 500 else "")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def seen(self) -> list[tuple[int, dict[str, str], bytes]]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[dict[str, Any]]:
        return [json.loads(body) for status, _h, body in self.seen() if status == 204]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(fail_first=2).start()
    yield rec
    rec.stop()


@pytest.fixture
def signing_secret(cluster: Cluster) -> Iterator[None]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "stringData": {"hmacKey": KEY},
    }
    cluster.apply(secret, namespace=rbac.OPERATOR_NAMESPACE)
    yield
    cluster.kubectl("delete", "secret", SECRET, "-n", rbac.OPERATOR_NAMESPACE, check=False)


def settings_file(tmp_path: Path, url: str, prometheus: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(
        json.dumps(
            {
                "providers": {
                    # A closed port: every measurement is an Error, so the rollout pauses.
                    "default": {"address": "http://127.0.0.1:9", "timeoutSeconds": 1},
                    "prom": {"address": prometheus},
                },
                "namespace": rbac.OPERATOR_NAMESPACE,
                "storageInitializerImage": "",
                "notifications": {
                    "endpoints": {ENDPOINT: {"url": url, "secretName": SECRET}},
                    # 3 s after the first failure: room to kill the operator in between.
                    "retry": {"initialDelaySeconds": 3, "maxDelaySeconds": 6, "maxAttempts": 50},
                },
            }
        )
    )
    return path


def versions() -> list[dict[str, Any]]:
    out = r.versions("1.0.0", "1.1.0", "1.2.0", "1.3.0")
    for mv, auc in zip(out, (0.95, 0.95, 0.5, 0.95), strict=True):
        mv["spec"]["metrics"] = {"auc": auc}
    return out


def delivery(cluster: Cluster, ns: str) -> dict[str, Any]:
    (state,) = r.status(cluster, ns).get("notifications") or [{}]
    return dict(state)


def condition(cluster: Cluster, ns: str) -> dict[str, Any]:
    conds = r.status(cluster, ns).get("conditions") or []
    return next((c for c in conds if c["type"] == "NotificationsDelivered"), {})


def delivered_types(receiver: Receiver) -> list[str]:
    return [d["type"] for d in receiver.accepted()]


def test_every_event_is_delivered_signed_across_a_restart_and_ids_deduplicate(
    cluster: Cluster,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    receiver: Receiver,
    signing_secret: None,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    settings = settings_file(tmp_path, receiver.url, prometheus.url)
    cluster.apply(versions(), namespace=namespace)
    cluster.apply(
        r.rollout(
            "1.0.0",
            gates={"offlineMetrics": [{"name": "auc", "min": 0.9}]},
            analysis={
                "provider": "default",
                "interval": "1s",
                "consecutiveErrorLimit": 1,
                "metrics": [{"name": "error-rate", "query": "vector(0)", "max": 0.05}],
            },
            notifications=[{"endpoint": ENDPOINT}],
        ),
        namespace=namespace,
    )
    first = operator_factory(args=[f"--settings={settings}"]).start()
    # The first version is promoted; its notification fails once, and the retry's state
    # is in status (attempts, next attempt) before the operator dies.
    wait_for(lambda: len(receiver.seen()) >= 1, timeout=60, message="first delivery attempt")
    pending = wait_for(
        lambda: delivery(cluster, namespace).get("pending") or None,
        timeout=30,
        message="retry state in status",
    )
    assert pending["attempts"] >= 1 and pending["event"]["type"] == "Promoted"
    cond = wait_for(
        lambda: (
            condition(cluster, namespace).get("status") == "False" and condition(cluster, namespace)
        ),
        timeout=30,
        message="NotificationsDelivered False",
    )
    assert cond["reason"] == "DeliveryFailing" and "HTTP 500" in cond["message"]
    first.kill()
    failed_before_restart = len(receiver.seen())
    assert failed_before_restart <= 2, receiver.seen()

    second = operator_factory(args=[f"--settings={settings}"]).start()
    wait_for(lambda: delivered_types(receiver) == ["Promoted"], timeout=60, message="Promoted")
    statuses = [status for status, _h, _b in receiver.seen()]
    assert statuses == [500, 500, 204], statuses

    # A candidate whose analysis cannot measure (the provider's port is closed) pauses.
    r.retarget(cluster, namespace, "1.1.0")
    paused = wait_for(
        lambda: (
            (r.status(cluster, namespace).get("pause") or {}).get("reason") == "AnalysisError"
            and r.status(cluster, namespace)
        ),
        timeout=90,
        message="paused: AnalysisError",
    )
    pause_id = plan.pause_event(
        Rollout.model_validate(
            {**cluster.get_json("rollout.ferryman.dev", "fraud", namespace), "status": paused}  # type: ignore[dict-item]
        )
    )
    assert pause_id is not None
    wait_for(
        lambda: "PausedForAnalysis" in delivered_types(receiver),
        timeout=30,
        message="PausedForAnalysis delivered",
    )
    r.act(cluster, namespace, "abort")
    wait_for(lambda: "Aborted" in delivered_types(receiver), timeout=60, message="Aborted")
    # Gates refuse 1.2.0 (auc 0.5 < 0.9) before any traffic.
    r.retarget(cluster, namespace, "1.2.0")
    wait_for(lambda: "Rejected" in delivered_types(receiver), timeout=60, message="Rejected")
    # 1.3.0 measured by the real Prometheus: vector(1) breaks max 0.05 at once.
    cluster.kubectl(
        "patch", "rollout.ferryman.dev", "fraud", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"target": {"version": "1.3.0"}, "analysis": {
            "provider": "prom", "interval": "1s", "failureLimit": 0,
            "metrics": [{"name": "error-rate", "query": "vector(1)", "max": 0.05}],
        }}}),
    )  # fmt: skip
    wait_for(lambda: "RolledBack" in delivered_types(receiver), timeout=90, message="RolledBack")

    final = Rollout.model_validate(cluster.get_json("rollout.ferryman.dev", "fraud", namespace))
    expected = {
        plan.history_id(final.metadata.uid, e)
        for e in final.status.history or []
        if e.outcome in plan.OUTCOME_EVENTS
    } | {pause_id.id}
    docs = receiver.accepted()
    assert {d["id"] for d in docs} == expected
    assert [d["type"] for d in docs] == [
        "Promoted",
        "PausedForAnalysis",
        "Aborted",
        "Rejected",
        "RolledBack",
    ]
    # Every request, failed or not, carries a valid signature over its exact body; the
    # header's id is the body's.
    now = int(time.time())
    for _status, headers, body in receiver.seen():
        assert notify_payload.verify(KEY, headers["X-Ferryman-Signature"], body, now=now)
        assert headers["X-Ferryman-Delivery"] == json.loads(body)["id"]
    first_doc = json.loads(receiver.seen()[0][2])
    assert first_doc["type"] == "Promoted" and first_doc["version"] == "1.0.0"
    assert [json.loads(b)["id"] for _s, _h, b in receiver.seen()[:3]] == [first_doc["id"]] * 3
    assert docs[0]["attempt"] == 3  # two failures, one of them before the restart
    aborted, rolled_back = docs[2], docs[4]
    assert (aborted["version"], aborted["cause"], aborted["measurement"]) == ("1.1.0", "User", None)
    assert (rolled_back["version"], rolled_back["cause"]) == ("1.3.0", "Analysis")
    m = rolled_back["measurement"]
    assert (m["metric"], m["value"], m["verdict"]) == ("error-rate", 1.0, "Failed"), m
    state = delivery(cluster, namespace)
    assert (state["delivered"], state.get("pending")) == (5, None)
    wait_for(
        lambda: condition(cluster, namespace).get("status") == "True",
        timeout=30,
        message="NotificationsDelivered True",
    )
    # The second process's counters: the failed attempts it made (two in all, minus the
    # first process's), and 5 delivered.
    with urllib.request.urlopen(second.metrics_url, timeout=5) as resp:
        scraped = resp.read().decode()
    counts = {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "ferryman_notifications_total"
        and sample.labels["namespace"] == namespace
        and sample.labels["endpoint"] == ENDPOINT
    }
    expected_counts = {"delivered": 5.0}
    if failed_before_restart < 2:
        expected_counts["failed"] = 2.0 - failed_before_restart
    assert counts == expected_counts, counts


def test_an_unknown_endpoint_is_reported_not_crashed_on(
    cluster: Cluster,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    settings = settings_file(tmp_path, "http://127.0.0.1:9/never")
    cluster.apply(versions(), namespace=namespace)
    cluster.apply(
        r.rollout("1.0.0", notifications=[{"endpoint": "no-such-hook"}]), namespace=namespace
    )
    op = operator_factory(args=[f"--settings={settings}"]).start()
    cond = wait_for(
        lambda: (
            condition(cluster, namespace).get("status") == "False" and condition(cluster, namespace)
        ),
        timeout=60,
        message="NotificationsDelivered False",
    )
    assert cond["reason"] == "UnknownEndpoint"
    assert (
        cond["message"] == f"unknown notification endpoint(s) no-such-hook (configured: {ENDPOINT})"
    )
    wait_for(
        lambda: (
            "NotificationEndpointUnknown"
            in cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        ),
        timeout=30,
        message="Warning Event",
    )
    # The rollout itself is unaffected, and the operator keeps running.
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy",
        timeout=60,
        message="Healthy",
    )
    assert op.proc is not None and op.proc.poll() is None
    # Removing the binding clears the state and the condition.
    cluster.kubectl(
        "patch",
        "rollout.ferryman.dev",
        "fraud",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/spec/notifications"}]),
    )
    wait_for(lambda: condition(cluster, namespace) == {}, timeout=30, message="condition cleared")


def lease_holder(cluster: Cluster, ns: str) -> str | None:
    lease = cluster.get_json("lease", "notify-leader", ns) or {}
    return (lease.get("spec") or {}).get("holderIdentity")


def test_only_the_lease_holder_sends(
    cluster: Cluster,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    signing_secret: None,
    tmp_path: Path,
) -> None:
    """Two replicas with leader election: the standby sends nothing, the new leader
    takes over delivery after a SIGKILL without sending the old leader's events again
    (their cursor is in status). The replicas run as the cluster admin with a Lease of
    their own in the test namespace (the chart's RBAC names one Lease, test_ha's)."""
    receiver = Receiver(fail_first=0).start()
    try:
        settings = settings_file(tmp_path, receiver.url)
        data = json.loads(settings.read_text())
        data["leaderElection"] = {
            "enabled": True,
            "namespace": namespace,
            "leaseName": "notify-leader",
            "leaseDurationSeconds": 4,
            "renewDeadlineSeconds": 3,
            "retryPeriodSeconds": 1,
        }
        settings.write_text(json.dumps(data))
        ops = {
            who: operator_factory(
                env={"POD_NAME": who}, args=[f"--settings={settings}"], kubeconfig=None
            )
            for who in ("op-a", "op-b")
        }
        cluster.apply(versions(), namespace=namespace)
        cluster.apply(
            r.rollout("1.0.0", notifications=[{"endpoint": ENDPOINT}]), namespace=namespace
        )
        ops["op-a"].start()
        wait_for(
            lambda: lease_holder(cluster, namespace) == "op-a", timeout=30, message="op-a leads"
        )
        wait_for(lambda: delivered_types(receiver) == ["Promoted"], timeout=60, message="Promoted")
        ops["op-b"].start()  # the standby
        r.retarget(cluster, namespace, "1.1.0")  # pauses at its manual step: no event
        wait_for(
            lambda: (r.status(cluster, namespace).get("pause") or {}).get("reason") == "Step",
            timeout=60,
            message="paused at the step",
        )
        ops["op-a"].kill()
        wait_for(
            lambda: lease_holder(cluster, namespace) == "op-b", timeout=30, message="op-b leads"
        )
        r.act(cluster, namespace, "abort")
        wait_for(lambda: "Aborted" in delivered_types(receiver), timeout=60, message="Aborted")
        time.sleep(2)  # room for a wrong extra delivery to show
        sent = [
            (json.loads(body)["type"], headers["User-Agent"].split("(")[-1].rstrip(")"))
            for _status, headers, body in receiver.seen()
        ]
        assert sent == [("Promoted", "op-a"), ("Aborted", "op-b")], sent
    finally:
        receiver.stop()
