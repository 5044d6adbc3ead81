"""Users of an A/B test for the simulated data plane (issue 16 §3): a companion of
``harness.dataplane`` (kept apart from it, like ``harness.predictions``).

Every 250 ms new users arrive (``users_per_s``), each with its own id (the hex digest of a
counter, so ids end in uniform hex digits, as ``percentOfUsers`` needs) in the header or
cookie the test names. Each user's request is routed by the route object ferryman wrote,
evaluated with RE2 (``harness.route_eval``, the engine Envoy uses), to exactly one
version. Per version it exports ``app_exposed_users_total`` (users who reached it) and
``app_converted_users_total`` (users who converted), the conversions being each version's
true rate times its users with the remainder carried (no random draws), so a verdict in
an e2e test is deterministic up to scrape timing. Users count from the moment the route
is an A/B one (the experiment's exposures), and start again at 0 with each new
experiment, as an application counts per experiment; before that users only make
requests. The
data plane's request shares follow the same users (``DataPlane.shares`` is what the
users reached), so the guardrail metrics see the split the route makes.

With ``clustered`` each user also sends 1 to 5 requests (by arrival order) whose
successes are correlated within the user (a propensity Beta(4 r, 4 (1 - r)) per user,
r the version's true rate per request, successes Binomial(requests, propensity)), drawn
from a generator seeded by the user's number, so the same user always does the same
thing; per version it then exports the six counters of an objective with ``unit:
requests`` (``harness.abclusters``: ``app_ab_users_total``, ``app_ab_requests_total``,
``app_ab_successes_total``, ``app_ab_requests_squared_total``,
``app_ab_successes_squared_total``, ``app_ab_requests_times_successes_total``), kept
with counter increments as an application would.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from harness import abclusters, route_eval
from harness.dataplane import DataPlane


@dataclass
class ABUsers:
    dataplane: DataPlane
    header: str = "x-user-id"
    cookie: str | None = None  # the id in this cookie instead of the header
    users_per_s: float = 100.0
    rate: dict[str, float] = field(default_factory=dict)  # version -> true conversion rate
    clustered: bool = False  # several correlated requests per user, the six sums exported

    def __post_init__(self) -> None:
        labels = ["namespace", "model", "version"]
        registry = self.dataplane.registry
        self.exposed = Counter("app_exposed_users", "users exposed", labels, registry=registry)
        self.converted = Counter(
            "app_converted_users", "users who converted", labels, registry=registry
        )
        self.sums: dict[str, abclusters.PerUserSums] = {}  # version -> the app's sums
        self.cluster_counters = {
            name: Counter(f"app_ab_{name}", f"abTest {name}", labels, registry=registry)
            for name in (abclusters.NAMES if self.clustered else ())
        }
        self.reached: dict[str, int] = {}  # version -> users so far
        self._carry: dict[str, float] = {}
        self._arrived = 0.0
        self._next = 0
        self._stop = threading.Event()
        # The data plane's request shares are the users' (one routing rule for both).
        self.dataplane._read_shares = self._shares  # type: ignore[method-assign]
        self._tick_shares: dict[str, float] = {}
        self._experiment: tuple[str, ...] = ()
        self.experiments: list[tuple[str, ...]] = []  # each experiment's Services, in order

    def start(self) -> ABUsers:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _shares(self) -> dict[str, float]:
        return dict(self._tick_shares)

    def _route(self) -> dict[str, Any] | None:
        dp = self.dataplane
        name = dp.route or dp.rollout
        for kind in ("httproute", "virtualservice"):
            obj = dp.cluster.get_json(kind, name, dp.namespace)
            if obj is not None:
                return obj
        return None

    def _headers(self, uid: str) -> dict[str, str]:
        if self.cookie is not None:
            return {"cookie": f"theme=dark; {self.cookie}={uid}"}
        return {self.header: uid}

    def _run(self) -> None:
        deadline = time.monotonic() + self.dataplane.limit_s
        last = time.monotonic()
        route: dict[str, Any] | None = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.25)
            now = time.monotonic()
            dt, last = now - last, now
            with contextlib.suppress(Exception):
                route = self._route()
            if route is None:
                continue
            self._arrived += self.users_per_s * dt
            n, self._arrived = int(self._arrived), self._arrived - int(self._arrived)
            counts: dict[str, int] = {}
            ab = _is_ab(route)
            if ab and _backends(route) != self._experiment:
                # A new experiment: the application's per-experiment counters start at 0.
                self._experiment = _backends(route)
                self.experiments.append(self._experiment)
                self.exposed.clear()
                self.converted.clear()
                for counter in self.cluster_counters.values():
                    counter.clear()
                self.sums = {}
                self._carry.clear()
                self.reached = {}
            for _ in range(n):
                uid = hashlib.sha256(str(self._next).encode()).hexdigest()[:32]
                self._next += 1
                pick = _weighted(self._next)
                service = route_eval.backend(route, self._headers(uid), pick)
                version = self.dataplane._version_of(service)
                if version:
                    counts[version] = counts.get(version, 0) + 1
                    if ab and self.clustered:
                        self._requests(version, uid, self._next)
            total = sum(counts.values()) or 1
            self._tick_shares = {v: c / total for v, c in counts.items()}
            if ab:  # exposures and conversions count from the experiment's start
                for version, c in counts.items():
                    self._emit(version, c)

    def _emit(self, version: str, users: int) -> None:
        dp = self.dataplane
        labels = {"namespace": dp.namespace, "model": dp.model, "version": version}
        self.exposed.labels(**labels).inc(users)
        self.reached[version] = self.reached.get(version, 0) + users
        amount = users * self.rate.get(version, 0.0) + self._carry.get(version, 0.0)
        k = int(amount)
        self._carry[version] = amount - k
        if k:
            self.converted.labels(**labels).inc(k)

    def _requests(self, version: str, uid: str, number: int) -> None:
        """User ``number``'s requests (1 to 5) and their correlated successes, counted as
        the application counts them (``harness.abclusters``)."""
        rng = random.Random(number)
        mean = self.rate.get(version, 0.0)
        p = rng.betavariate(4 * mean, 4 * (1 - mean)) if 0 < mean < 1 else mean
        sums = self.sums.setdefault(version, abclusters.PerUserSums())
        dp = self.dataplane
        labels = {"namespace": dp.namespace, "model": dp.model, "version": version}
        for _ in range(1 + number % 5):
            inc = sums.request(uid, success=rng.random() < p)
            for name, amount in inc.items():
                if amount:
                    self.cluster_counters[name].labels(**labels).inc(amount)


def _backends(route: dict[str, Any]) -> tuple[str, ...]:
    """The Services a route sends to, in its order (an experiment's identity)."""
    spec = route.get("spec") or {}
    names = [b["name"] for r in spec.get("rules") or [] for b in r.get("backendRefs") or []]
    names += [
        d["destination"]["host"] for h in spec.get("http") or [] for d in h.get("route") or []
    ]
    return tuple(names)


def _is_ab(route: dict[str, Any]) -> bool:
    """Whether the route sends users by a header match (an A/B test's route)."""
    spec = route.get("spec") or {}
    # (the API server gives every HTTPRoute rule a path match: only headers count)
    gateway = [m for r in spec.get("rules") or [] for m in r.get("matches") or []]
    istio = [m for h in spec.get("http") or [] for m in h.get("match") or []]
    return any(m.get("headers") for m in gateway + istio)


def _weighted(seed: int) -> route_eval.Pick:
    """A deterministic pick among weighted backends (a route that is not an A/B one)."""

    def pick(backends: list[tuple[str, int]]) -> str:
        total = sum(w for _, w in backends)
        at = seed % total
        for name, w in backends:
            if at < w:
                return name
            at -= w
        return backends[-1][0]

    return pick
