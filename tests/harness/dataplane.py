"""A simulated data plane for tests and the demo (not part of the operator).

There is no real proxy in the local cluster, so this plays one: every 250 ms it reads the
Rollout's routing object (an HTTPRoute or VirtualService, as written by ferryman) and
emits ``model_requests_total{model,version,code}`` and
``model_request_seconds_bucket{model,version,le}`` for each version in proportion to its
weight, plus a mirrored copy of ``percent`` of the traffic for the mirror target. Each
version's error rate and latency, and whether it gets traffic at all, can be changed at
run time; that is how a test makes a candidate go bad. It serves /metrics on 127.0.0.1
for the Prometheus fixture to scrape; every loop is bounded by ``stop()`` or its time
limit.

A route someone else owns (issue 15 §1: ``route`` names it, ``rules`` the rules or
VirtualService HTTP routes ferryman manages there) is read the same way, rule by rule
found by name wherever its owners put it: the request rate is split evenly over the named
rules, and each rule's backends and mirrors send their share to the versions they name.
Backends that are not a version's Service (the owners' own) get no model traffic. A named
rule that is missing sends nothing.

Where requests come from (``traffic``: the share of the rate by source, issue 15 §2):
``gateway`` (north-south, the default: through the Gateway, routed by the route named
``route``, default the Rollout's; an HTTPRoute whose parents are all Services is not a
Gateway's and carries none of it) and ``mesh`` (east-west: in-cluster calls to the
Rollout's live Service, routed as a mesh does: by an HTTPRoute whose parent is that
Service (GAMMA; the oldest when several), else by a VirtualService for the ``mesh``
gateway (no ``gateways``, or ``mesh`` among them) whose hosts name the Service, else by
the Service itself, which sends everything to the version its selector picks).
``grpc`` (gRPC calls through the Gateway, issue 15 §3: routed by the GRPCRoute named
``route``, default the Rollout's; weights and RequestMirror as an HTTPRoute's).
``by_source`` holds each source's split, as ``shares`` holds the sum.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from harness.kube import Cluster
from harness.net import free_port

# (share of the source's requests, [(backend Service, weight)], [(mirror Service, percent)])
Flow = tuple[float, list[tuple[str, float]], list[tuple[str, float]]]
BUCKETS = (0.01, 0.025, 0.05, 0.08, 0.1, 0.11, 0.12, 0.13, 0.15, 0.2, 0.3, 0.5, 1.0)


@dataclass
class Behaviour:
    error_rate: float = 0.0
    latency: float = 0.1
    traffic: float = 1.0  # multiplier: 0 = the version receives no requests


@dataclass
class DataPlane:
    cluster: Cluster
    namespace: str
    rollout: str = "fraud"
    model: str = "fraud"
    rate: float = 200.0  # requests per second across all versions
    limit_s: float = 900.0
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    route: str | None = None  # the route's name (default: the Rollout's, ferryman's own)
    rules: tuple[str, ...] = ()  # named rules in a shared route (empty: the first rule)
    # Share of the request rate by where it comes from (module docstring).
    traffic: dict[str, float] = field(default_factory=lambda: {"gateway": 1.0})

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "model_requests",
            "requests served",
            ["namespace", "model", "version", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "model_request_seconds",
            "request latency",
            ["namespace", "model", "version"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._stop = threading.Event()
        self._carry: dict[str, float] = {}
        self._versions: dict[str, str] = {}  # Service name -> version
        self._not_versions: dict[str, float] = {}  # Service name -> when last found not one
        self.shares: dict[str, float] = {}
        self.by_source: dict[str, dict[str, float]] = {}
        self._rng = random.Random(7)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, version: str, **changes: float) -> None:
        b = self.behaviour.setdefault(version, Behaviour())
        for k, v in changes.items():
            setattr(b, k, v)

    def start(self) -> DataPlane:
        self._server, self._server_thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.shutdown()
        self._server_thread.join(timeout=5)

    def _version_of(self, service: str) -> str | None:
        if time.monotonic() - self._not_versions.get(service, -10.0) < 5:
            return None  # not a version's Service a moment ago: not read again each tick
        if service not in self._versions:
            svc = self.cluster.get_json("service", service, self.namespace) or {}
            version = ((svc.get("metadata") or {}).get("annotations") or {}).get(
                "ferryman.dev/version"
            )
            if not version:
                self._not_versions[service] = time.monotonic()
                return None
            self._versions[service] = version
        return self._versions[service]

    def _selected(self, rules: list[Any]) -> list[tuple[float, Any]]:
        """(share of the request rate, rule) of each rule that carries model traffic."""
        if not self.rules:
            return [(1.0, rules[0])] if rules else []
        by_name = {r.get("name"): r for r in rules}
        return [(1 / len(self.rules), by_name[n]) for n in self.rules if n in by_name]

    @staticmethod
    def _http_flows(rules: list[tuple[float, Any]]) -> list[Flow]:
        flows: list[Flow] = []
        for share, rule in rules:
            backends = [(b["name"], b.get("weight", 1)) for b in rule.get("backendRefs", [])]
            mirror = [
                (f["requestMirror"]["backendRef"]["name"], f["requestMirror"].get("percent", 100))
                for f in rule.get("filters", [])
                if f["type"] == "RequestMirror"
            ]
            flows.append((share, backends, mirror))
        return flows

    @staticmethod
    def _vs_flows(rules: list[tuple[float, Any]]) -> list[Flow]:
        flows: list[Flow] = []
        for share, http in rules:
            backends = [(r["destination"]["host"], r.get("weight", 100)) for r in http["route"]]
            mirror = (
                [(http["mirror"]["host"], http.get("mirrorPercentage", {}).get("value", 100))]
                if "mirror" in http
                else []
            )
            flows.append((share, backends, mirror))
        return flows

    def _gateway_flows(self) -> list[Flow]:
        name = self.route or self.rollout
        route = self.cluster.get_json("httproute", name, self.namespace)
        if route is not None:
            parents = route["spec"].get("parentRefs") or []
            if parents and all(p.get("kind") == "Service" for p in parents):
                return []  # a mesh route: no Gateway's
            return self._http_flows(self._selected(route["spec"]["rules"]))
        vs = self.cluster.get_json("virtualservice", name, self.namespace)
        if vs is None:
            return []
        return self._vs_flows(self._selected(vs["spec"]["http"]))

    def _grpc_flows(self) -> list[Flow]:
        route = self.cluster.get_json("grpcroute", self.route or self.rollout, self.namespace)
        return self._http_flows(self._selected(route["spec"]["rules"])) if route else []

    def _items(self, kind: str, *selector: str) -> list[Any]:
        proc = self.cluster.kubectl(
            "get", kind, "-n", self.namespace, "-o", "json", *selector, check=False
        )
        return list(json.loads(proc.stdout)["items"]) if proc.returncode == 0 else []

    def _mesh_flows(self) -> list[Flow]:
        service = self.rollout

        def ours(p: Any) -> bool:
            return (
                p.get("kind") == "Service"
                and p.get("group", "") == ""
                and p.get("name") == service
                and p.get("namespace", self.namespace) == self.namespace
            )

        gamma = [
            r
            for r in self._items("httproute")
            if any(ours(p) for p in r["spec"].get("parentRefs", []))
        ]
        if gamma:
            oldest = min(
                gamma,
                key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]),
            )
            return self._http_flows(self._selected(oldest["spec"]["rules"]))
        hosts = {
            service,
            f"{service}.{self.namespace}",
            f"{service}.{self.namespace}.svc.cluster.local",
        }
        for vs in sorted(self._items("virtualservice"), key=lambda v: v["metadata"]["name"]):
            gateways = vs["spec"].get("gateways") or ["mesh"]
            if "mesh" in gateways and hosts & set(vs["spec"].get("hosts") or []):
                return self._vs_flows(self._selected(vs["spec"]["http"]))
        live = self.cluster.get_json("service", service, self.namespace)
        picked = ((live or {}).get("spec") or {}).get("selector", {}).get("ferryman.dev/version")
        if not picked:
            return []
        found = self._items("service", "-l", f"ferryman.dev/version={picked}")
        versions: list[str] = [s["metadata"]["name"] for s in found]
        return [(1.0, [(n, 1.0) for n in versions if self._version_of(n)][:1], [])]

    def _read_shares(self) -> dict[str, float]:
        """Fraction of the request rate each version serves (mirrored copies included)."""
        shares: dict[str, float] = {}
        by_source: dict[str, dict[str, float]] = {}
        for source, weight in self.traffic.items():
            flows = (
                self._mesh_flows()
                if source == "mesh"
                else self._grpc_flows()
                if source == "grpc"
                else self._gateway_flows()
            )
            split = by_source[source] = self._split(flows)
            for version, share in split.items():
                shares[version] = shares.get(version, 0.0) + weight * share
        self.by_source = by_source
        return shares

    def _split(self, flows: list[Flow]) -> dict[str, float]:
        shares: dict[str, float] = {}
        for share, backends, mirror in flows:
            total = sum(w for _, w in backends) or 1
            for backend, weight in backends:
                version = self._version_of(backend)
                if version:
                    shares[version] = shares.get(version, 0.0) + share * weight / total
            for backend, percent in mirror:
                version = self._version_of(backend)
                if version:
                    shares[version] = shares.get(version, 0.0) + share * percent / 100
        return shares

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        last = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.25)
            now = time.monotonic()
            dt, last = now - last, now
            with contextlib.suppress(Exception):
                self.shares = self._read_shares()
            for version, share in self.shares.items():
                self._emit(version, self.rate * dt * share)

    def _emit(self, version: str, expected: float) -> None:
        b = self.behaviour.get(version, Behaviour())
        amount = expected * b.traffic + self._carry.get(version, 0.0)
        n = int(amount)
        self._carry[version] = amount - n
        errors = sum(1 for _ in range(n) if self._rng.random() < b.error_rate)
        labels: dict[str, Any] = {
            "namespace": self.namespace,
            "model": self.model,
            "version": version,
        }
        if n - errors:
            self.requests.labels(code="200", **labels).inc(n - errors)
        if errors:
            self.requests.labels(code="500", **labels).inc(errors)
        hist = self.latency.labels(**labels)
        for _ in range(n):
            hist.observe(b.latency)
