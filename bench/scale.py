"""Scale benchmark: 1,000 Rollouts (3,000 ModelVersions), 100 of them progressing at once
through 5-step canaries with Prometheus analysis every 10 s, for 10 minutes of load.

Why it exists: issue 12 §1.3. What an operator costs, and how late its timers fire, with
many rollouts under way is what users meet at scale (Flagger's analyses stretch to 30
minutes at ~50 canaries); the e2e suite cannot show it, so this script measures it and
prints figures, never failing on one. bench/growth.py reuses its pieces.

Set-up (bench/harness.py): ferryman's CRDs, one fresh namespace, a real Prometheus
(tests/harness/prometheus.py, scraping every 1 s), one operator subprocess as the chart's
ServiceAccount with that Prometheus as its default provider, and ``Traffic``: a simulated
data plane for every Rollout of the namespace at once (one watch on the HTTPRoutes, no
GETs; ``model_requests_total`` for each version in proportion to its weight). N Rollouts
(default 1,000), each with its own model and three ModelVersions (1.0.0, 1.1.0, 1.2.0),
replicas 1, canary over Gateway API, steps [setWeight 20, pause 20s, setWeight 40, pause
20s, setWeight 60, pause 20s, setWeight 80, pause 20s] and then promotion (five weight
changes), analysis every 10 s (error rate and a minimum sample count, real PromQL),
created by parallel bounded ``kubectl create`` clients (the time printed) and waited on
until all are Healthy. Then, for the load window (default 10 minutes), K Rollouts
(default 100) are kept progressing: each that finishes is replaced by the next idle one,
retargeted to its next version (1.0.0 -> 1.1.0 -> 1.2.0 -> 1.0.0).

Lateness (all on this machine's wall clock; watch receipts are this process's monotonic
clock mapped to it with ``harness.to_wall``):

- **step lateness**: for each step pause that ended in the window, its schedule is the
  moment the operator's own status says the next step became due: ``status.pause.since``
  + the pause's duration, or, if later, the ``at`` of the first Successful measurement
  taken at or after ``status.analysis.since`` (the last weight change: a weight increase
  and the promotion wait for that evidence). Lateness = the route watch's first receipt
  of different weights after that moment - the moment; the operator's route write in the
  audit log (``stageTimestamp``) is printed beside it as a cross-check.
- **analysis lateness**: each measurement's ``at`` - (the previous measurement's ``at`` +
  the interval), the ``nextMeasurementAt`` the operator scheduled (consecutive
  measurements of one rollout, from its status).

Also: operator RSS (peak = the largest of 1-s samples in the window, and the process's
``VmHWM``; steady = the median of the samples over the window's second half), operator
CPU s/min and control-plane CPU s/min (kube-apiserver + etcd) separately, the operator's
API requests per minute by verb and resource (audit log).

Run: ``python -m bench.scale`` from the repository root; ``--rollouts N``,
``--progressing K``, ``--minutes M``, ``--clients C`` (parallel creators), ``--time-limit
S`` (default 1800: a hard bound on every wait; the load window ends with it too);
``--smoke`` is 3 Rollouts, 2 progressing through one weight step (a 1 s pause, analysis
every 1 s), one wave, for ``make test``. Exit status 0 when every Rollout went Healthy and
at least one step was timed, 2 otherwise. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Counter, start_http_server

from bench.harness import (
    AuditLog,
    Bench,
    CpuSnapshot,
    Requests,
    Stamped,
    cpu_lines,
    cpu_seconds,
    machine,
    memory_mib,
    spread,
    wall,
)
from bench.reaction import model_version, names, route_reactions
from harness.net import free_port
from harness.prometheus import PrometheusServer

VERSIONS = {"a": "1.0.0", "b": "1.1.0", "c": "1.2.0"}
NEXT = {"1.0.0": "1.1.0", "1.1.0": "1.2.0", "1.2.0": "1.0.0"}
WEIGHTS = (20, 40, 60, 80)  # then the promotion: five weight changes
RATE = 20.0  # simulated requests per second per model
SEL = 'namespace="{{namespace}}",model="{{model}}",version="{{version}}"'


@dataclass(frozen=True)
class Shape:
    """A rollout's steps: each weight followed by a pause of ``pause_s``, then the
    promotion; analysis every ``interval_s`` (seconds)."""

    pause_s: int = 20
    interval_s: int = 10
    weights: tuple[int, ...] = WEIGHTS

    @property
    def window(self) -> str:
        return f"{max(self.interval_s, 3)}s"

    def describe(self) -> str:
        steps = ", ".join(f"setWeight {w}, pause {self.pause_s}s" for w in self.weights)
        return f"steps [{steps}] then promotion; analysis every {self.interval_s}s"

    def expected_s(self) -> float:
        """A rollout's length without any delay: its pauses (pods and evidence add)."""
        return len(self.weights) * self.pause_s + self.interval_s


# ``--smoke``: one weight step and its pause, then the promotion, all within seconds.
SMOKE = Shape(pause_s=1, interval_s=1, weights=(50,))


def analysis(shape: Shape) -> dict[str, Any]:
    w = shape.window
    errors = (
        f'(sum(rate(model_requests_total{{{SEL},code="500"}}[{w}])) or vector(0)) '
        f"/ sum(rate(model_requests_total{{{SEL}}}[{w}]))"
    )
    return {
        "provider": "default",
        "interval": f"{shape.interval_s}s",
        "failureLimit": 1,
        "inconclusiveLimit": 3,
        "consecutiveErrorLimit": 3,
        "minSamples": {"query": f"sum(increase(model_requests_total{{{SEL}}}[{w}]))", "min": 5},
        "metrics": [{"name": "error-rate", "query": errors, "max": 0.05}],
    }


def manifests(model: str, shape: Shape, target: str = "1.0.0") -> list[dict[str, Any]]:
    """Three ModelVersions (``<model>-a`` 1.0.0, ``-b`` 1.1.0, ``-c`` 1.2.0) and the
    Rollout with analysis."""
    out: list[dict[str, Any]] = []
    out += [model_version(model, suffix, version) for suffix, version in VERSIONS.items()]
    steps: list[dict[str, Any]] = []
    for weight in shape.weights:
        steps += [{"setWeight": weight}, {"pause": {"duration": f"{shape.pause_s}s"}}]
    out.append(
        {
            "apiVersion": "ferryman.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": model},
            "spec": {
                "model": model,
                "target": {"version": target},
                "replicas": 1,
                "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}},
                "strategy": {"canary": {"steps": steps}},
                "analysis": analysis(shape),
                "scaleDownDelaySeconds": 0,
                # Long: on a loaded 2-core machine a first rollout of 1,000 can take 10 min.
                "progressDeadlineSeconds": 1800,
            },
        }
    )
    return out


def create_parallel(
    bench: Bench, docs: list[dict[str, Any]], clients: int, chunk: int = 50
) -> None:
    """Create ``docs`` in the bench's namespace with ``clients`` ``kubectl create``
    processes at a time, ``chunk`` objects each (one POST per object)."""
    batches = [docs[i : i + chunk] for i in range(0, len(docs), chunk)]

    def create(batch: list[dict[str, Any]]) -> None:
        body = json.dumps({"kind": "List", "apiVersion": "v1", "items": batch})
        bench.cluster.kubectl("create", "-n", bench.namespace, "-f", "-", input=body, timeout=600)

    with ThreadPoolExecutor(max_workers=max(1, clients)) as pool:
        list(pool.map(create, batches))


class Latest:
    """The latest received version of each object of a ``Stamped`` watch, kept up to date
    by ``update()`` (reads only what arrived since the last call)."""

    def __init__(self, stamped: Stamped) -> None:
        self.stamped = stamped
        self.objects: dict[str, dict[str, Any]] = {}
        self._cursor = 0

    def update(self) -> list[str]:
        """Fold in what arrived; the names that changed."""
        seen = self.stamped.seen
        end = len(seen)
        changed = []
        for _, kind, obj in seen[self._cursor : end]:
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj
            changed.append(name)
        self._cursor = end
        return changed


def weights(route: dict[str, Any]) -> dict[str, int]:
    return {b["name"]: b.get("weight", 1) for b in route["spec"]["rules"][0]["backendRefs"]}


class Traffic:
    """A simulated data plane for every Rollout of a namespace: every 0.5 s, for each
    HTTPRoute (from a route watch, never a GET), ``RATE`` requests per second split by the
    route's weights, counted in ``model_requests_total{namespace,model,version,code}``
    (all answered 200). The backend names are the ModelVersions' (``<model>-<a|b|c>``),
    so the version comes from the name. Serves /metrics on 127.0.0.1 for Prometheus."""

    def __init__(self, namespace: str, routes: Stamped) -> None:
        self.namespace = namespace
        self.routes = Latest(routes)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "model_requests",
            "requests served",
            ["namespace", "model", "version", "code"],
            registry=self.registry,
        )
        self.port = free_port()
        self._stop = threading.Event()
        self._carry: dict[tuple[str, str], float] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Traffic:
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

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.5):
            now = time.monotonic()
            dt, last = now - last, now
            self.routes.update()
            for model, route in list(self.routes.objects.items()):
                try:
                    shares = weights(route)
                except (KeyError, IndexError):
                    continue
                total = sum(shares.values()) or 1
                for backend, weight in shares.items():
                    version = VERSIONS.get(backend.rsplit("-", 1)[-1])
                    if version is None or not weight:
                        continue
                    key = (model, version)
                    amount = RATE * dt * weight / total + self._carry.get(key, 0.0)
                    n = int(amount)
                    self._carry[key] = amount - n
                    if n:
                        self.requests.labels(self.namespace, model, version, "200").inc(n)


@dataclass
class Driver:
    """Keeps ``k`` Rollouts progressing: starts ``k`` at once (merge patches of
    ``spec.target.version`` to each one's next version), and each time one is Healthy on
    its new version starts the next idle one, until ``stop_starting`` (monotonic). Also
    samples the operator's RSS once a second."""

    bench: Bench
    rollouts: Latest
    models: list[str]
    k: int
    pid: int
    version: dict[str, str] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)  # model -> target version
    started: int = 0
    finished: int = 0
    stuck: list[str] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)
    _next: int = 0

    def __post_init__(self) -> None:
        for m in self.models:
            self.version.setdefault(m, "1.0.0")

    def _start_one(self) -> None:
        idle = [m for m in self.models if m not in self.running]
        if not idle:
            return
        model = self.models[self._next % len(self.models)]
        while model in self.running:
            self._next += 1
            model = self.models[self._next % len(self.models)]
        self._next += 1
        target = NEXT[self.version[model]]
        self.bench.cluster.custom.patch_namespaced_custom_object(
            "ferryman.dev", "v1alpha1", self.bench.namespace, "rollouts", model,
            {"spec": {"target": {"version": target}}},
        )  # fmt: skip
        self.running[model] = target
        self.started += 1

    def _done(self, model: str) -> bool:
        st = (self.rollouts.objects.get(model) or {}).get("status") or {}
        target = self.running[model]
        if st.get("phase") == "Healthy" and st.get("stableVersion") == target:
            self.version[model] = target
            return True
        if st.get("phase") in TERMINAL:
            self.stuck.append(f"{model}: {st.get('phase')}: {st.get('message', '')[:120]}")
            return True
        return False

    def run(self, stop_starting: float, end: float) -> None:
        """Keep ``k`` going until ``stop_starting``, then let the running ones finish,
        returning at the latest at ``end`` (both monotonic)."""
        while len(self.running) < self.k and len(self.running) < len(self.models):
            self._start_one()
        sampled = 0.0
        while True:
            now = time.monotonic()
            if now - sampled >= 1.0:
                self.rss.append((now, memory_mib(self.pid)[0]))
                sampled = now
            self.rollouts.update()
            for model in [m for m in self.running if self._done(m)]:
                del self.running[model]
                self.finished += 1
                if now < stop_starting:
                    self._start_one()
            if now >= end or (now >= stop_starting and not self.running):
                return
            time.sleep(0.2)


TERMINAL = ("RolledBack", "Aborted", "Rejected", "Invalid")


def wait_all_healthy(latest: Latest, models: list[str], deadline: float) -> list[str]:
    """Until every one of ``models`` is Healthy or has ended otherwise (RolledBack,
    Aborted, Rejected, Invalid: on a loaded machine a first rollout can miss its progress
    deadline); the Healthy ones, in order. TimeoutError at ``deadline`` (monotonic)."""
    want = set(models)
    while True:
        latest.update()
        phases = {m: ((latest.objects.get(m) or {}).get("status") or {}).get("phase") for m in want}
        settled = {m for m, p in phases.items() if p == "Healthy" or p in TERMINAL}
        if settled == want:
            return [m for m in models if phases[m] == "Healthy"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(want - settled)} of {len(want)} not Healthy")
        time.sleep(0.5)


def lateness(
    models: list[str],
    shape: Shape,
    rollouts: Stamped,
    routes: Stamped,
    writes: list[Any],
    start: float,
    end: float,
) -> tuple[list[float], list[float], list[float]]:
    """Step lateness (route watch), the same to the audit log's route write, and analysis
    lateness, in seconds, for the steps due and the measurements taken between ``start``
    and ``end`` (wall seconds). See the module docstring for the definitions."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for _, kind, obj in list(rollouts.seen):
        if kind != "DELETED":
            by_model.setdefault(obj["metadata"]["name"], []).append(obj.get("status") or {})
    step_watch: list[float] = []
    step_audit: list[float] = []
    late_measure: list[float] = []
    for model in models:
        statuses = by_model.get(model, [])
        successes = sorted(
            {
                wall(m["at"])
                for st in statuses
                for m in ((st.get("analysis") or {}).get("measurements") or [])
                if m.get("verdict") == "Successful"
            }
        )
        due: set[float] = set()
        pairs: set[tuple[float, float]] = set()
        for st in statuses:
            pause = st.get("pause") or {}
            if pause.get("reason") != "Step" or not pause.get("since"):
                continue
            moment = wall(pause["since"]) + shape.pause_s
            since = (st.get("analysis") or {}).get("since")
            if since:
                evidence = [t for t in successes if t >= wall(since)]
                if evidence:
                    moment = max(moment, evidence[0])
            if start <= moment <= end:
                due.add(moment)
            # Consecutive measurements of this rollout: the schedule is previous + interval.
            ats = [wall(m["at"]) for m in ((st.get("analysis") or {}).get("measurements") or [])]
            pairs.update(itertools.pairwise(ats))
        audit, watched = route_reactions(model, sorted(due), routes, writes)
        step_watch += watched
        step_audit += audit
        for prev, at in pairs:
            if start <= at <= end:
                late_measure.append(at - prev - shape.interval_s)
    return step_watch, step_audit, late_measure


@dataclass
class Window:
    """The figures of one window (load or idle): CPU, RSS, requests, lateness."""

    name: str
    seconds: float
    cpu: dict[str, float]
    rss_peak: float
    rss_steady: float
    rss_hwm: float
    requests: Requests
    step_watch: list[float] = field(default_factory=list)
    step_audit: list[float] = field(default_factory=list)
    late_measure: list[float] = field(default_factory=list)
    started: int = 0
    finished: int = 0
    load: float = 0.0

    def per_min(self, key: str) -> float:
        return self.cpu.get(key, 0.0) / max(self.cpu["elapsed"], 1e-9) * 60

    def lines(self, audit: bool) -> list[str]:
        minutes = self.seconds / 60
        out = [
            f"{self.name}: {self.seconds:.0f}s, {self.started} rollouts started, "
            f"{self.finished} finished; load average (1 min) {self.load:.2f}",
            f"  step lateness (route watch): {spread(self.step_watch)}",
            f"  step lateness (audit route write): {spread(self.step_audit)}",
            f"  analysis lateness (measurement at - scheduled): {spread(self.late_measure)}",
            f"  operator RSS peak {self.rss_peak:.0f} MiB, steady {self.rss_steady:.0f} MiB "
            f"(1-s samples; the process's peak so far, VmHWM, {self.rss_hwm:.0f} MiB)",
            *cpu_lines(self.cpu),
        ]
        if audit:
            out.append(f"  operator requests per minute ({self.requests.total} in the window):")
            out += ["  " + line for line in self.requests.lines(per=minutes, unit="minute")]
        else:
            out.append("  operator requests: no audit log for this cluster")
        return out


class Stack:
    """Prometheus, the watches, the simulated data plane and the operator (``Bench``),
    started in that order and stopped in reverse."""

    def __init__(self, prefix: str) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"ferryman-{prefix}-"))
        self.prometheus = PrometheusServer(self.workdir / "prometheus")
        self.bench = Bench(prefix, {"providers": {"default": {"address": self.prometheus.url}}})

    def __enter__(self) -> Stack:
        self.prometheus.start()
        try:
            self.bench.__enter__()
            self.audit = AuditLog()
            ns = self.bench.namespace
            self.routes = Stamped(self.bench.cluster, ns, "httproutes")
            self.rollout_watch = Stamped(self.bench.cluster, ns, "rollouts")
            self.latest = Latest(self.rollout_watch)
            self.traffic = Traffic(ns, self.routes).start()
            self.prometheus.add_target("scale", self.traffic.address)
        except BaseException:
            self.prometheus.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.traffic.stop()
            self.routes.stop()
            self.rollout_watch.stop()
            self.bench.__exit__(*exc)
        finally:
            self.prometheus.stop()

    def create(self, models: list[str], shape: Shape, clients: int) -> tuple[float, float, float]:
        """Create the models' ModelVersions, then their Rollouts, in parallel; wait until
        all the namespace's Rollouts are Healthy. (ModelVersions s, Rollouts s, all
        Healthy s after creation began)."""
        docs = [d for m in models for d in manifests(m, shape)]
        t0 = time.monotonic()
        create_parallel(self.bench, [d for d in docs if d["kind"] == "ModelVersion"], clients)
        t1 = time.monotonic()
        create_parallel(self.bench, [d for d in docs if d["kind"] == "Rollout"], clients)
        t2 = time.monotonic()
        return t1 - t0, t2 - t1, t2 - t0

    def window(
        self,
        name: str,
        driver: Driver | None,
        shape: Shape,
        seconds: float,
        deadline: float,
        models: list[str],
        during: Callable[[], None] | None = None,
    ) -> Window:
        """A load window (``driver`` keeps rollouts going for ``seconds``, then the running
        ones finish, bounded by ``deadline``) or an idle one (``driver`` None)."""
        pid = self.bench.pid
        before = CpuSnapshot.take(pid)
        me, prom = cpu_seconds(os.getpid()), cpu_seconds(self._prom_pid())
        t0 = time.time()
        start = time.monotonic()
        if during is not None:
            during()
        rss: list[tuple[float, float]] = []
        if driver is not None:
            started, finished = driver.started, driver.finished
            stop = min(start + seconds, deadline)
            driver.run(stop_starting=stop, end=deadline)
            rss = driver.rss
            started, finished = driver.started - started, driver.finished - finished
        else:
            started = finished = 0
            while time.monotonic() < min(start + seconds, deadline):
                rss.append((time.monotonic(), memory_mib(pid)[0]))
                time.sleep(1.0)
        t1 = time.time()
        used = CpuSnapshot.take(pid).since(before)
        used["bench script (data plane, watches)"] = cpu_seconds(os.getpid()) - me
        used["prometheus"] = cpu_seconds(self._prom_pid()) - prom
        mid = start + (time.monotonic() - start) / 2
        second_half = [r for at, r in rss if at >= mid] or [memory_mib(pid)[0]]
        out = Window(
            name=name,
            seconds=t1 - t0,
            cpu=used,
            rss_peak=max([r for _, r in rss] or [memory_mib(pid)[0]]),
            rss_steady=statistics.median(second_half),
            rss_hwm=memory_mib(pid)[1],
            requests=self.audit.requests(t0, t1),
            started=started,
            finished=finished,
            load=os.getloadavg()[0],
        )
        if driver is not None:
            out.step_watch, out.step_audit, out.late_measure = lateness(
                models, shape, self.rollout_watch, self.routes, out.requests.writes, t0, t1
            )
        return out

    def _prom_pid(self) -> int:
        proc = self.prometheus.proc
        return proc.pid if proc is not None else 0


def commit() -> str:
    """The repository's commit (``git rev-parse --short HEAD``), "+dirty" when it has
    uncommitted changes; "unknown" outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def report(
    label: str, n: int, k: int, seconds: float, shape: Shape, load: Window, audited: bool
) -> list[str]:
    """The scale benchmark's figures as text: a header (commit, sizes, the rollouts'
    shape, the machine and its load), then the load window's figures."""
    header = (
        f"scale benchmark at commit {label}: {n} Rollouts ({3 * n} ModelVersions), {k} "
        f"progressing at once for {seconds:.0f}s (then the running ones finish); "
        f"{shape.describe()}; {machine()}"
    )
    return [header, *load.lines(audited)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000, help="Rollouts held")
    parser.add_argument("--progressing", type=int, default=100, help="kept progressing")
    parser.add_argument("--minutes", type=float, default=10, help="the load window")
    parser.add_argument("--clients", type=int, default=6, help="parallel kubectl creators")
    parser.add_argument("--time-limit", type=float, default=1800, help="hard bound (s)")
    parser.add_argument("--smoke", action="store_true", help="3 Rollouts, 2 progressing, 1 wave")
    args = parser.parse_args(argv)
    # SIGTERM (a stopped job) exits through the context managers: the operator,
    # Prometheus and the namespace are cleaned up as on any other exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        n, k, seconds, limit, shape = 3, 2, 0.0, 60.0, SMOKE
    else:
        n, k, seconds, limit = args.rollouts, args.progressing, args.minutes * 60, args.time_limit
        shape = Shape()
    label = commit()
    started = time.monotonic()
    deadline = started + limit
    models = names(n)
    with Stack("bench-scale") as stack:
        mv_s, ro_s, _ = stack.create(models, shape, args.clients)
        print(
            f"created {3 * n} ModelVersions in {mv_s:.1f}s and {n} Rollouts in {ro_s:.1f}s "
            f"({args.clients} parallel kubectl create clients)",
            flush=True,
        )
        try:
            healthy = wait_all_healthy(stack.latest, models, deadline)
        except TimeoutError as e:
            print(f"time limit: {e}", flush=True)
            return 2
        print(
            f"{len(healthy)} of {n} Healthy (the others ended otherwise) "
            f"{time.monotonic() - started:.1f}s after set-up began; "
            f"operator RSS {memory_mib(stack.bench.pid)[0]:.0f} MiB",
            flush=True,
        )
        driver = Driver(stack.bench, stack.latest, healthy, k, stack.bench.pid)
        load = stack.window("load", driver, shape, seconds, deadline, models)
    print("\n".join(report(label, n, k, seconds, shape, load, stack.audit.available)), flush=True)
    for line in driver.stuck[:10]:
        print(f"  did not promote: {line}", flush=True)
    return 0 if load.step_watch else 2


if __name__ == "__main__":
    sys.exit(main())
