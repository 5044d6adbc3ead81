"""Faults between the operator and its dependencies (issue 13 §2), with a real fault proxy.

The operator (a subprocess, the chart's ServiceAccount) reaches the API server and
Prometheus only through Toxiproxy (tests/harness/toxiproxy.py); its API server is a
second kube-apiserver on the cluster's etcd (localcluster.ApiServerReplica), so a test can
restart it without disturbing the tests that share the first one. The test itself, the
sampler and the simulated data plane use the direct, fault-free connection.

Each fault is injected while a canary with Prometheus analysis is paused at 50% (the
operator measures and writes status every analysis interval) or while it scales and
moves traffic. Through all of it: the sampler (harness.sampler: on every watch event of
the route and Deployments and at least every 100 ms) sees no weights != 100 and no weight
on unready capacity; the operator process never exits; nothing is rolled back (the
candidate is good); the promotion, when it comes, has analysis evidence; every rollout
finishes. Recovery is the time from the fault's end to the operator's first new
measurement written (to its first Successful one for a Prometheus fault); it is printed
and collected in docs/reliability.md "## Faults", never asserted.

`make test` runs one case of each kind in one canary (shortened: a 10 s blackhole);
`make faults` (FERRYMAN_FAULT_MATRIX=1) runs the full matrix, one canary per fault, with
the 5 s latency, the 30 s blackhole, a disabled proxy, lost responses, an etcd restart
(which the other tests of a parallel run would feel, hence not in `make test`) and a
rollback under faults.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import localcluster
import pytest
import yaml

from e2e import rollouts as r
from e2e.test_analysis import analysis
from harness import rbac
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.net import free_port
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer
from harness.sampler import Sampler
from harness.toxiproxy import Proxy, ToxiproxyServer

pytestmark = [
    pytest.mark.usefixtures("ferryman_crds"),
    pytest.mark.prometheus,
    pytest.mark.kwok,
    pytest.mark.slow,
]

FULL = os.environ.get("FERRYMAN_FAULT_MATRIX") == "1"
# How long the operator may take to write again after a fault ends before the test
# fails (a liveness bound, not a timing assertion: the figures are printed).
RECOVERY_BOUND_S = 90


@pytest.fixture(scope="session")
def replica(cluster: Cluster) -> Iterator[localcluster.ApiServerReplica]:
    """The operator's own API server: a second kube-apiserver on the cluster's etcd."""
    if not cluster.local:
        pytest.fail("needs the local control plane (a second API server on its etcd)")
    server = localcluster.ApiServerReplica(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Rig:
    cluster: Cluster
    ns: str
    toxi: ToxiproxyServer
    kube: Proxy
    prom: Proxy
    replica: localcluster.ApiServerReplica
    operator: OperatorProcess
    recoveries: dict[str, float] = field(default_factory=dict)


def proxied_kubeconfig(source: Path, out: Path, server: str) -> Path:
    data = yaml.safe_load(source.read_text())
    for c in data["clusters"]:
        c["cluster"]["server"] = server
    out.write_text(json.dumps(data))
    out.chmod(0o600)
    return out


@pytest.fixture
def toxiproxy(tmp_path: Path) -> Iterator[ToxiproxyServer]:
    server = ToxiproxyServer(tmp_path / "toxiproxy").start()
    yield server
    server.stop()


@pytest.fixture
def rig_factory(
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    toxiproxy: ToxiproxyServer,
    replica: localcluster.ApiServerReplica,
    prometheus: PrometheusServer,
    operator_identity: rbac.Identity,
    operator_factory: Callable[..., OperatorProcess],
) -> Callable[..., Rig]:
    """Proxies to the operator's API server and to Prometheus, and an operator (not yet
    started) that reaches both only through them."""

    def make(env: dict[str, str] | None = None) -> Rig:
        kube = toxiproxy.proxy("kube", f"127.0.0.1:{replica.port}")
        prom = toxiproxy.proxy("prom", f"127.0.0.1:{prometheus.port}")
        kubeconfig = proxied_kubeconfig(
            operator_identity.kubeconfig, tmp_path / "kubeconfig", f"https://{kube.address}"
        )
        settings = tmp_path / "settings.yaml"
        settings.write_text(
            json.dumps(
                {
                    "providers": {"default": {"address": f"http://{prom.address}"}},
                    "namespace": rbac.OPERATOR_NAMESPACE,
                    "storageInitializerImage": "",
                }
            )
        )
        op = operator_factory(kubeconfig=kubeconfig, args=[f"--settings={settings}"], env=env)
        return Rig(cluster, namespace, toxiproxy, kube, prom, replica, op)

    return make


# -- faults ---------------------------------------------------------------------------
# A fault is applied, held, and ended; ``apply`` returns the function that ends it.


@dataclass(frozen=True)
class Fault:
    name: str  # the fault matrix's row
    target: str  # "kube" (operator <-> API server) or "prom" (operator <-> Prometheus)
    hold_s: float
    apply: Callable[[Rig], Callable[[], None]]


def toxic(proxy: str, kind: str, stream: str = "downstream", **attrs: int) -> Callable[..., Any]:
    def apply(rig: Rig) -> Callable[[], None]:
        p: Proxy = getattr(rig, proxy)
        name = p.add(kind, stream, attrs)
        return lambda: p.remove(name)

    return apply


def blackhole(proxy: str) -> Callable[..., Any]:
    """Both directions: every byte dropped, connections left open (``timeout`` toxic
    with timeout 0), as a silently broken network path does."""

    def apply(rig: Rig) -> Callable[[], None]:
        p: Proxy = getattr(rig, proxy)
        names = [p.add("timeout", s, {"timeout": 0}) for s in ("upstream", "downstream")]

        def end() -> None:
            for n in names:
                p.remove(n)

        return end

    return apply


def disabled(proxy: str) -> Callable[..., Any]:
    """Connections closed and refused (the proxy's listener is down)."""

    def apply(rig: Rig) -> Callable[[], None]:
        p: Proxy = getattr(rig, proxy)
        p.enable(False)
        return lambda: p.enable(True)

    return apply


def apiserver_restart(rig: Rig) -> Callable[[], None]:
    took = rig.replica.restart()
    print(f"API server restarted: unavailable {took:.1f}s")
    return lambda: None


def etcd_restart(rig: Rig) -> Callable[[], None]:
    took = localcluster.restart_etcd(down_s=2)
    print(f"etcd restarted: unavailable {took:.1f}s")
    return lambda: None


# The limit_data toxic closes a connection once that many bytes went through it: a TLS
# handshake is about 1 KB upstream and 3 KB downstream, so every request is cut in its
# headers or body (upstream: the write never arrives) or in its response (downstream: the
# write may have been applied, its answer is lost).
MID_WRITE_BYTES_UP = 1500
MID_RESPONSE_BYTES_DOWN = 4500

SMOKE = [
    Fault("API server latency 1 s", "kube", 3, toxic("kube", "latency", latency=1000)),
    Fault("API server bandwidth 16 KB/s", "kube", 2, toxic("kube", "bandwidth", rate=16)),
    Fault("API reset mid-watch", "kube", 1, toxic("kube", "reset_peer", timeout=0)),
    Fault(
        "API reset mid-write",
        "kube",
        3,
        toxic("kube", "limit_data", "upstream", bytes=MID_WRITE_BYTES_UP),
    ),
    Fault("API blackhole 5 s", "kube", 5, blackhole("kube")),
    Fault("Prometheus blackhole 6 s", "prom", 6, blackhole("prom")),
]
MATRIX = [
    *SMOKE,
    Fault("API server restart", "kube", 0, apiserver_restart),
    Fault("API blackhole 10 s", "kube", 10, blackhole("kube")),
    Fault("API server latency 5 s", "kube", 15, toxic("kube", "latency", latency=5000)),
    Fault("API blackhole 30 s", "kube", 30, blackhole("kube")),
    Fault("API connection refused 30 s", "kube", 30, disabled("kube")),
    # Longer than kopf's default request retries (1+1+2+3+5+8+13+21 s): an API server
    # upgrade or a control-plane failover can take that long.
    Fault("API connection refused 90 s", "kube", 90, disabled("kube")),
    Fault(
        "API response lost after write",
        "kube",
        4,
        toxic("kube", "limit_data", "downstream", bytes=MID_RESPONSE_BYTES_DOWN),
    ),
    Fault("etcd restart", "kube", 0, etcd_restart),
    Fault("Prometheus latency 1 s", "prom", 8, toxic("prom", "latency", latency=1000)),
    Fault("Prometheus latency 5 s", "prom", 10, toxic("prom", "latency", latency=5000)),
    Fault("Prometheus bandwidth 1 KB/s", "prom", 8, toxic("prom", "bandwidth", rate=1)),
    Fault("Prometheus reset", "prom", 4, toxic("prom", "reset_peer", timeout=0)),
    Fault("Prometheus blackhole 30 s", "prom", 30, blackhole("prom")),
]


# -- the rollout under faults ---------------------------------------------------------


def newest(cluster: Cluster, ns: str) -> dict[str, Any] | None:
    ms = (r.status(cluster, ns).get("analysis") or {}).get("measurements") or []
    return ms[-1] if ms else None


def inject(rig: Rig, fault: Fault) -> float:
    """Apply ``fault``, hold it, end it; wait for the operator's first new measurement
    written after the end (a Successful one for a Prometheus fault) and return the
    seconds that took (the recovery time)."""
    assert rig.operator.proc is not None
    end = fault.apply(rig)
    time.sleep(fault.hold_s)
    before = newest(rig.cluster, rig.ns)
    end()
    ended = time.monotonic()

    def recovered() -> bool:
        m = newest(rig.cluster, rig.ns)
        if m is None or m == before:
            return False
        return fault.target == "kube" or m["verdict"] == "Successful"

    wait_for(recovered, timeout=RECOVERY_BOUND_S, message=f"operator back after {fault.name}")
    took = time.monotonic() - ended
    assert rig.operator.proc.poll() is None, f"operator exited during {fault.name}"
    rig.recoveries[fault.name] = took
    load = os.getloadavg()[0]
    print(
        f"FAULT {fault.name}: held {fault.hold_s:.0f}s, recovered in {took:.1f}s (load {load:.1f})"
    )
    return took


def start_canary(rig: Rig, *, steps: list[dict[str, Any]] | None = None) -> Sampler:
    """1.0.0 stable, then the retarget to 1.1.0; returns the sampler, started before it."""
    c, ns = rig.cluster, rig.ns
    c.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    strategy = {"canary": {"steps": steps or [{"setWeight": 50}, {"pause": {}}]}}
    c.apply(
        r.rollout("1.0.0", analysis=analysis(), strategy=strategy, progressDeadlineSeconds=600),
        namespace=ns,
    )
    rig.operator.start()
    wait_for(
        lambda: (
            r.status(c, ns).get("stableVersion") == "1.0.0"
            and r.status(c, ns).get("phase") == "Healthy"
        ),
        timeout=90,
        message="1.0.0 stable",
    )
    sampler = Sampler(c, ns, replicas=2, limit_s=900)
    r.retarget(c, ns, "1.1.0")
    return sampler


def paused_at_50(rig: Rig) -> None:
    wait_for(
        lambda: (
            r.http_route(rig.cluster, rig.ns) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50}
            and r.status(rig.cluster, rig.ns).get("phase") == "Paused"
            and newest(rig.cluster, rig.ns) is not None
        ),
        timeout=120,
        message="candidate at 50%, paused, measured",
    )


def promote_and_check(rig: Rig, sampler: Sampler) -> None:
    """Promote past the manual pause, then ``check_promoted``."""
    c, ns = rig.cluster, rig.ns
    r.act(c, ns, "promote")
    wait_for(
        lambda: (
            r.status(c, ns).get("stableVersion") == "1.1.0"
            and r.status(c, ns).get("phase") == "Healthy"
        ),
        timeout=120,
        message="1.1.0 promoted",
    )
    check_promoted(rig, sampler)


def check_promoted(rig: Rig, sampler: Sampler) -> None:
    """The operator promoted only on evidence, nothing was rolled back, the sampler saw
    nothing unsafe, the operator never exited."""
    st = r.status(rig.cluster, rig.ns)
    history = [(h["version"], h["outcome"]) for h in st["history"]]
    assert history == [("1.0.0", "Promoted"), ("1.1.0", "Promoted")], st["history"]
    assert not st.get("rolledBackVersions"), st
    promoted_at = st["history"][-1]["at"]
    evidence = [
        m
        for m in st["analysis"]["measurements"]
        if m["verdict"] == "Successful" and m["at"] <= promoted_at
    ]
    assert evidence, f"promoted without evidence: {st['analysis']['measurements']}"
    assert sampler.stop() == []
    assert sampler.evaluations["event"] > 0 and sampler.evaluations["timer"] > 0
    assert rig.operator.proc is not None and rig.operator.proc.poll() is None
    assert rig.operator.starts == 1, "the operator was restarted"


def report(rig: Rig) -> None:
    load = os.getloadavg()[0]
    for name, took in rig.recoveries.items():
        print(f"| {name} | {took:.1f} s | load {load:.1f} |")


def test_one_of_each_fault_during_a_canary(
    rig_factory: Callable[..., Rig], dataplane: DataPlane
) -> None:
    """`make test`'s case: every fault kind in turn, on one canary held at 50%, the
    first one (1 s of API latency) already while it scales up and moves traffic; the
    last, an API server restart with etcd compacted meanwhile while the user promotes:
    the operator's watches (5 s server timeout) come back to a compacted
    resourceVersion (410 Gone) and must still see the promotion made in the gap."""
    rig = rig_factory(env={"FERRYMAN_WATCH_TIMEOUT_SECONDS": "5"})
    first, *rest = SMOKE
    sampler = start_canary(rig)
    end = first.apply(rig)
    paused_at_50(rig)
    end()
    for fault in rest:
        inject(rig, fault)
    took = restart_in_a_gap(rig, lambda: r.act(rig.cluster, rig.ns, "promote"))
    rig.recoveries["API server restart, etcd compacted, promoted in the gap"] = took
    report(rig)
    check_promoted(rig, sampler)


def restart_in_a_gap(rig: Rig, change: Callable[[], object]) -> float:
    """Stop the operator's API server, make ``change`` through the other one, add more
    history and compact etcd, start it again; prove that a watch from the version the
    operator last saw is now 410 Gone. Returns when the API server is back, for the
    caller to measure from, after waiting until the rollout finished on 1.1.0: the
    seconds from the restart to that."""
    c, ns = rig.cluster, rig.ns
    seen = (c.get_json("rollout.ferryman.dev", "fraud", ns) or {})["metadata"]["resourceVersion"]
    rig.replica.stop()
    change()
    for i in range(3):  # more history after the change, then all of it compacted away
        c.kubectl("annotate", "--overwrite", "rollout.ferryman.dev", "fraud", "-n", ns, f"x={i}")
    compacted = localcluster.compact_etcd()
    down = rig.replica.start()
    back = time.monotonic()
    path = f"/apis/ferryman.dev/v1alpha1/namespaces/{ns}/rollouts"
    gone = watch_from(rig.replica, path, seen)
    assert gone.get("type") == "ERROR" and gone["object"].get("code") == 410, gone
    wait_for(
        lambda: (
            r.status(c, ns).get("stableVersion") == "1.1.0"
            and r.status(c, ns).get("phase") == "Healthy"
        ),
        timeout=RECOVERY_BOUND_S,
        message="the change made during the gap is acted on",
    )
    took = time.monotonic() - back
    print(
        f"FAULT API server restart ({down:.1f}s to ready), etcd compacted at {compacted}: "
        f"rollout finished {took:.1f}s after it was back, load {os.getloadavg()[0]:.1f}"
    )
    assert rig.operator.proc is not None and rig.operator.proc.poll() is None
    return took


if FULL:

    @pytest.mark.parametrize("fault", MATRIX, ids=[f.name for f in MATRIX])
    def test_fault_matrix(
        rig_factory: Callable[..., Rig], dataplane: DataPlane, fault: Fault
    ) -> None:
        rig = rig_factory()
        sampler = start_canary(rig)
        paused_at_50(rig)
        inject(rig, fault)
        report(rig)
        promote_and_check(rig, sampler)

    def test_no_promotion_while_prometheus_is_unreachable(
        rig_factory: Callable[..., Rig], dataplane: DataPlane
    ) -> None:
        """A canary without a manual pause would promote on its own once analysis has
        evidence: with Prometheus blackholed from the retarget on, it must not promote
        until Prometheus is back and has answered."""
        rig = rig_factory()
        c, ns = rig.cluster, rig.ns
        c.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
        strategy = {"canary": {"steps": [{"setWeight": 50}]}}
        c.apply(r.rollout("1.0.0", analysis=analysis(), strategy=strategy), namespace=ns)
        rig.operator.start()
        wait_for(
            lambda: r.status(c, ns).get("phase") == "Healthy",
            timeout=90,
            message="1.0.0 stable",
        )
        sampler = Sampler(c, ns, replicas=2)
        end = blackhole("prom")(rig)
        r.retarget(c, ns, "1.1.0")
        time.sleep(20)
        assert r.status(c, ns).get("stableVersion") == "1.0.0", r.status(c, ns)
        ended = datetime.now(UTC)
        end()
        wait_for(
            lambda: r.status(c, ns).get("stableVersion") == "1.1.0",
            timeout=RECOVERY_BOUND_S,
            message="promoted once Prometheus answers",
        )
        st = r.status(c, ns)
        promoted_at = datetime.fromisoformat(st["history"][-1]["at"].replace("Z", "+00:00"))
        assert promoted_at >= ended.replace(microsecond=0), (promoted_at, ended)
        print(
            f"FAULT Prometheus blackhole before any evidence: promoted {promoted_at - ended} after"
        )
        check_promoted(rig, sampler)

    def test_rollback_under_faults_still_finishes(
        rig_factory: Callable[..., Rig], dataplane: DataPlane
    ) -> None:
        """A bad candidate is rolled back through 1 s of API latency and lost write
        responses: the rollback is made, finishes, and is safe on every sample."""
        rig = rig_factory()
        sampler = start_canary(rig)
        paused_at_50(rig)
        ends = [
            toxic("kube", "latency", latency=1000)(rig),
            toxic("kube", "limit_data", "downstream", bytes=MID_RESPONSE_BYTES_DOWN * 3)(rig),
        ]
        dataplane.set("1.1.0", error_rate=0.3)
        try:
            wait_for(
                lambda: r.status(rig.cluster, rig.ns).get("phase") == "RolledBack",
                timeout=120,
                message="rolled back under faults",
            )
        finally:
            for end in ends:
                end()
        wait_for(
            lambda: r.http_route(rig.cluster, rig.ns) == {"fraud-1-0-0": 100},
            timeout=60,
            message="route back on 1.0.0",
        )
        assert sampler.stop() == []
        assert rig.operator.proc is not None and rig.operator.proc.poll() is None


# -- expired watches ------------------------------------------------------------------


def watch_from(replica: localcluster.ApiServerReplica, path: str, rv: str) -> dict[str, Any]:
    """The first event of a watch of ``path`` from ``rv`` on the operator's API server
    (admin credentials, direct). A restarted API server answers 429 while its watch cache
    initializes (and 403 until its RBAC informers sync): asked again, bounded."""
    layout = replica.layout
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    url = f"{replica.server}{path}?watch=1&resourceVersion={rv}&timeoutSeconds=2"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
                line = resp.readline()
            return dict(json.loads(line)) if line else {}
        except urllib.error.HTTPError as e:
            if e.code not in (403, 429, 503) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if FULL:

    def test_expired_watch_resumes_without_a_missed_event(rig_factory: Callable[..., Rig]) -> None:
        """Watches time out every 2 s (FERRYMAN_WATCH_TIMEOUT_SECONDS); while the operator's
        API server is down, the Rollout is retargeted and etcd is compacted, so the operator's
        watches come back to a resourceVersion that is gone (410 Gone, proven by a watch of
        our own from the same version). It must list again and act on the retarget."""
        rig = rig_factory(env={"FERRYMAN_WATCH_TIMEOUT_SECONDS": "2"})
        c, ns = rig.cluster, rig.ns
        c.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
        strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}
        c.apply(r.rollout("1.0.0", strategy=strategy), namespace=ns)
        rig.operator.start()
        wait_for(
            lambda: r.status(c, ns).get("phase") == "Healthy",
            timeout=90,
            message="1.0.0 stable",
        )
        time.sleep(3)  # past one watch timeout: the operator's watches resumed from a version
        sampler = Sampler(c, ns, replicas=2)
        took = restart_in_a_gap(rig, lambda: r.retarget(c, ns, "1.1.0"))
        print(f"FAULT expired watch, retargeted in the gap: finished {took:.1f}s after")
        assert sampler.stop() == []
        assert rig.operator.proc is not None and rig.operator.proc.poll() is None
        assert rig.operator.starts == 1
        history = [(h["version"], h["outcome"]) for h in r.status(c, ns)["history"]]
        assert history == [("1.0.0", "Promoted"), ("1.1.0", "Promoted")]
