"""Rollback benchmark: how long from a candidate going bad to all traffic back on stable.

Why it exists: the e2e suite asserts that a bad candidate is rolled back, never how fast
(a wall-clock bound in a test fails on a busy machine, not on a slow operator). This
script measures it instead and prints figures; it never fails on a timing.

Set-up, the e2e harness's (tests/harness): the local control plane (or
FERRYMAN_TEST_KUBECONFIG), ferryman's CRDs, a real Prometheus scraping the simulated data
plane, one operator subprocess (``python -m ferryman``, as the chart's ServiceAccount)
watching the runs' namespaces.
Each run: a Rollout with Prometheus analysis (interval and failureLimit of
tests/e2e/test_analysis.py) goes Healthy on 1.0.0, 1.1.0 is paused at 50%, then the data
plane makes 1.1.0 answer 20% errors ("went bad"). A watch on the HTTPRoute and one on the
Rollout, both opened before that moment, stamp each change with this process's monotonic
clock on receipt; the figure is went-bad -> first route version with 100% on stable. The
operator's own status timestamps (the Failed measurement's and the RolledBack history
entry's ``at``) cross-check it on the wall clock of the same machine. Two more clocks:
Prometheus' query API, asked every 0.1 s for the analysis' error-rate query from the
moment the candidate goes bad (``BreachWatch``: the evaluation timestamp of the first
answer over the threshold is when the breach became visible, so breach visible -> route
100% stable is the operator's share, analysis interval included), and the API server's
audit log (``requestReceivedTimestamp`` and ``stageTimestamp`` of the operator's route
write, microseconds), a cross-check of the watch.

Run: ``python -m bench.rollback`` (or ``python bench/rollback.py``) from the repository
root, ``--runs N`` (default 10) and ``--time-limit S`` (default 600: no run starts after
it; it also bounds the waits of a run under way); ``--smoke`` is one run within
120 s, for ``make test``. Exit status 0 when at least
one run completed, 2 when none did (the rollback did not happen at all: a behaviour
failure, which the e2e suite reports too). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests", ROOT / "hack" / "cluster"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import localcluster  # noqa: E402

from bench.harness import (  # noqa: E402
    AuditLog,
    Stamped,
    machine,
    object_writes,
    percentile,
    to_wall,
    wall,
)
from e2e import rollouts as r  # noqa: E402
from e2e.test_analysis import ERRORS, FAILURE_LIMIT, INTERVAL_S, analysis  # noqa: E402
from harness import rbac  # noqa: E402
from harness.dataplane import DataPlane  # noqa: E402
from harness.kube import Cluster, open_cluster, wait_for  # noqa: E402
from harness.operator import OperatorProcess  # noqa: E402
from harness.prometheus import SCRAPE_INTERVAL_S, PrometheusServer  # noqa: E402

STABLE, CANDIDATE = "fraud-1-0-0", "fraud-1-1-0"
# The end-to-end bound of DESIGN §2 for this set-up: failureLimit + 1 failed
# measurements, one analysis interval apart, plus one scrape interval after the candidate
# goes bad.
DESIGN_BOUND_S = INTERVAL_S * (FAILURE_LIMIT + 1) + SCRAPE_INTERVAL_S
RATE_WINDOW_S = 3  # the [3s] of the error-rate query: the errors fill it gradually
THRESHOLD = 0.05  # the error-rate metric's max in e2e.test_analysis.analysis()
POLL_S = 0.1  # how often the breach watcher asks Prometheus


class BreachWatch:
    """Asks Prometheus' query API every ``POLL_S`` seconds for the analysis' error-rate
    query (rendered for the candidate) and keeps the evaluation timestamp of the first
    answer over the threshold: the moment the breach became visible in Prometheus, on
    Prometheus' clock (the same machine's wall clock; at most ``POLL_S`` + one query's
    time after the first scrape that carried it)."""

    def __init__(self, prometheus: PrometheusServer, namespace: str, version: str) -> None:
        self.query = ERRORS.replace("{{namespace}}", namespace).replace("{{version}}", version)
        self.prometheus = prometheus
        self.visible: float | None = None
        self.value = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.visible is None:
            try:
                for sample in self.prometheus.query(self.query):
                    at, value = sample["value"]
                    if float(value) > THRESHOLD:
                        self.visible, self.value = float(at), float(value)
            except (RuntimeError, ValueError, KeyError):
                pass
            self._stop.wait(POLL_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


def one_run(
    cluster: Cluster, ns: str, prometheus: PrometheusServer, audit: AuditLog, deadline: float
) -> dict[str, float]:
    """One rollback, measured; raises AssertionError if it does not happen before
    ``deadline`` (monotonic seconds). The audit figures are left out when there is no
    audit log, the Prometheus one when the breach watch saw none."""

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    dp = DataPlane(cluster, ns).start()
    prometheus.add_target(f"dp-{ns}", dp.address)
    try:
        cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
        cluster.apply(r.rollout("1.0.0", analysis=analysis()), namespace=ns)
        wait_for(
            lambda: r.status(cluster, ns).get("phase") == "Healthy",
            timeout=left(),
            message="stable",
        )
        r.retarget(cluster, ns, "1.1.0")
        wait_for(
            lambda: (
                r.status(cluster, ns).get("phase") == "Paused"
                and r.http_route(cluster, ns) == {STABLE: 50, CANDIDATE: 50}
            ),
            timeout=left(),
            message="candidate paused at 50%",
        )
        route = Stamped(cluster, ns, "httproutes")
        rollout = Stamped(cluster, ns, "rollouts")
        breach = BreachWatch(prometheus, ns, "1.1.0")
        try:
            went_bad, went_bad_wall = time.monotonic(), time.time()
            dp.set("1.1.0", error_rate=0.2)
            on_stable = wait_for(
                lambda: route.first(
                    "fraud", went_bad, lambda o: r.route_weights(o) == {STABLE: 100}
                ),
                timeout=left(),
                message="route 100% stable",
            )
            rolled_back = wait_for(
                lambda: rollout.first("fraud", went_bad, lambda o: phase(o) == "RolledBack"),
                timeout=left(),
                message="status RolledBack",
            )
        finally:
            route.stop()
            rollout.stop()
            breach.stop()
        st = rolled_back[1]["status"]
        decided = wall(st["history"][-1]["at"])
        failed = [m for m in st["analysis"]["measurements"] if m["verdict"] == "Failed"]
        routed = to_wall(on_stable[0])
        extra: dict[str, float] = {}
        if breach.visible is not None:
            extra["visible"] = breach.visible - went_bad_wall
            extra["visible_to_route"] = routed - breach.visible
        # The route write that put 100% on stable: the last one the operator completed
        # before the watch delivered it (250 ms of slack, as in bench/reaction.py).
        writes = [
            w
            for w in object_writes(audit, "httproutes", ns, "fraud", went_bad_wall, routed)
            if w[1] <= routed + 0.25
        ]
        if writes:
            received, stage, _ = writes[-1]
            extra["audit_received"] = received - went_bad_wall
            extra["audit_stage"] = stage - went_bad_wall
            extra["watch_after_audit"] = routed - stage
            if breach.visible is not None:
                extra["visible_to_audit"] = stage - breach.visible
        return extra | {
            "route": on_stable[0] - went_bad,
            "status": rolled_back[0] - went_bad,
            "decided": decided - went_bad_wall,
            "first_failed": wall(failed[0]["at"]) - went_bad_wall,
            # The decisive measurement to the route, on the machine's wall clock.
            "last_failed_to_route": went_bad_wall
            + on_stable[0]
            - went_bad
            - wall(failed[-1]["at"]),
        }
    finally:
        prometheus.remove_target(f"dp-{ns}")
        dp.stop()


def _release(cluster: Cluster, namespaces: list[str], timeout: float) -> bool:
    """Delete the namespaces' Rollouts; whether, within ``timeout`` seconds, no Rollout
    and no finalizer on a ModelVersion is left in them."""
    live = {n.metadata.name for n in cluster.core.list_namespace().items if n.metadata}
    mine = [ns for ns in namespaces if ns in live]
    for ns in mine:
        cluster.kubectl("delete", "rollout.ferryman.dev", "--all", "-n", ns, "--wait=false")

    def held(ns: str) -> bool:
        rollouts: Any = cluster.custom.list_namespaced_custom_object(
            "ferryman.dev", "v1alpha1", ns, "rollouts"
        )
        versions: Any = cluster.custom.list_namespaced_custom_object(
            "ferryman.dev", "v1alpha1", ns, "modelversions"
        )
        return bool(rollouts["items"]) or any(
            mv["metadata"].get("finalizers") for mv in versions["items"]
        )

    deadline = time.monotonic() + timeout
    while True:
        if not any(held(ns) for ns in mine):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def report(runs: list[dict[str, float]], failed: int, machine: str) -> str:
    """The figures as text: per-figure p50 and max over the runs, and the ratio to the
    design bound for the headline figure."""
    lines = [
        f"rollback benchmark: {len(runs)} run(s) completed, {failed} did not; {machine}",
        f"analysis interval {INTERVAL_S}s, failureLimit {FAILURE_LIMIT}, scrape interval "
        f"{SCRAPE_INTERVAL_S}s, error-rate window {RATE_WINDOW_S}s; design bound "
        f"{DESIGN_BOUND_S}s = interval x (failureLimit + 1) + scrape interval (DESIGN §2); "
        f"Prometheus polled every {POLL_S}s for the breach",
    ]
    names = {
        "visible": "went bad -> breach visible in Prometheus (query over threshold)",
        "visible_to_route": "breach visible in Prometheus -> route 100% stable (watch)",
        "visible_to_audit": "breach visible in Prometheus -> route write (audit stageTimestamp)",
        "audit_received": "went bad -> route write received (audit requestReceivedTimestamp)",
        "audit_stage": "went bad -> route write completed (audit stageTimestamp)",
        "watch_after_audit": "route write completed (audit) -> route 100% stable (watch)",
        "route": "went bad -> route 100% stable (watch)",
        "status": "went bad -> status RolledBack (watch)",
        "decided": "went bad -> RolledBack history at (operator clock)",
        "first_failed": "went bad -> first Failed measurement at (operator clock)",
        "last_failed_to_route": "decisive Failed measurement at -> route 100% stable (watch)",
    }
    for key, label in names.items():
        values = [run[key] for run in runs if key in run]
        if values:
            lines.append(
                f"  {label}: p50 {statistics.median(values):.3f}s  "
                f"p90 {percentile(values, 90):.3f}s  max {max(values):.3f}s"
            )
    if runs:
        route = [run["route"] for run in runs]
        lines.append(
            f"  ratio to the design bound: p50 {statistics.median(route) / DESIGN_BOUND_S:.2f}"
            f"  max {max(route) / DESIGN_BOUND_S:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="rollbacks to measure")
    parser.add_argument("--time-limit", type=float, default=600, help="start no run after (s)")
    parser.add_argument("--smoke", action="store_true", help="one run within 120 s")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    runs_wanted, limit = (1, 120.0) if args.smoke else (max(1, args.runs), args.time_limit)
    started = time.monotonic()
    cluster, started_here = open_cluster()
    workdir = Path(tempfile.mkdtemp(prefix="ferryman-bench-"))
    prometheus = PrometheusServer(workdir / "prometheus")
    namespaces = [cluster.create_namespace(f"bench-rollback-{i}") for i in range(runs_wanted)]
    operator: OperatorProcess | None = None
    audit = AuditLog()
    runs: list[dict[str, float]] = []
    failed = 0
    try:
        crds = ROOT / "crds"
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=ferryman-crds",
            "-f", str(crds),
        )  # fmt: skip
        names = [f"crd/{p.name.removesuffix('.yaml')}" for p in sorted(crds.glob("*.yaml"))]
        cluster.wait_established(*names)
        prometheus.start()
        settings = workdir / "settings.yaml"
        settings.write_text(
            json.dumps(
                {
                    "providers": {"default": {"address": prometheus.url}},
                    "namespace": rbac.OPERATOR_NAMESPACE,
                    "storageInitializerImage": "",
                }
            )
        )
        # The operator runs as the chart's ServiceAccount, as in the e2e suite (the same
        # rendered objects as its operator_identity fixture: applying them is idempotent).
        identity = rbac.provision(
            cluster,
            rbac.render(
                cluster.helm_bin,
                rbac.suite_values(),
                workdir=workdir / "identity",
            ),
            kubeconfig=workdir / "identity" / "kubeconfig",
        )
        operator = OperatorProcess(
            cluster, namespaces=namespaces, log_dir=workdir / "operator",
            args=[f"--settings={settings}"], kubeconfig=identity.kubeconfig,
        ).start()  # fmt: skip
        for i, ns in enumerate(namespaces):
            if time.monotonic() - started > limit:
                print(f"time limit {limit:.0f}s reached after {i} run(s)", flush=True)
                break
            try:
                run = one_run(cluster, ns, prometheus, audit, started + limit)
            except (AssertionError, TimeoutError) as e:
                failed += 1
                print(f"run {i + 1}: no rollback measured: {e}", flush=True)
                continue
            runs.append(run)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:.3f}s" for k, v in run.items()), flush=True)
            cluster.delete_namespace(ns)
    finally:
        # The Rollouts go while the operator still runs (it removes its finalizers, from
        # them and from the ModelVersions they served); then nothing holds the namespaces.
        try:
            released = _release(cluster, namespaces, timeout=60 if operator else 0)
        except Exception as e:  # never leave the operator or Prometheus running
            print(f"cleanup: {e}", file=sys.stderr)
            released = False
        if operator is not None:
            operator.stop()
        prometheus.stop()
        for ns in namespaces:
            cluster.delete_namespace(ns)
        if not released:
            print("some bench objects still carry ferryman's finalizers", file=sys.stderr)
        if started_here:
            localcluster.down()
    print(report(runs, failed, machine()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "failed": failed}, indent=2))
    if not runs and operator is not None:
        print(f"--- operator log tail ---\n{operator.log_tail()}", file=sys.stderr)
    return 0 if runs else 2


if __name__ == "__main__":
    sys.exit(main())
