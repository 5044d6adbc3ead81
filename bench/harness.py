"""What every benchmark measures the same way: the operator's API requests from the API
server's audit log, CPU and memory from /proc, percentiles and tables, the machine's load,
and the set-up (CRDs, the operator's identity, one operator subprocess).

Why it exists: each benchmark (bench/reaction.py, bench/idle.py, later scale and growth)
must count requests, CPU and memory identically, or their figures cannot be compared; and
``apiserver_request_total`` has no user label, so the operator's own requests are only
visible in the audit log (hack/cluster/localcluster.py ``AUDIT_POLICY``: Metadata level
for every ServiceAccount of ferryman-system, the identity the operator runs as here).

Clocks: watch receipts use this process's monotonic clock (``Stamped``); audit events and
the operator's status timestamps use the wall clock of the same machine (microseconds).
``to_wall`` maps one to the other with one offset taken at import.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "tests", ROOT / "hack" / "cluster"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import localcluster  # noqa: E402
from kubernetes import client, watch  # noqa: E402

from harness import rbac  # noqa: E402
from harness.kube import Cluster, open_cluster, wait_for  # noqa: E402
from harness.operator import OperatorProcess  # noqa: E402

OPERATOR_USER = f"system:serviceaccount:{rbac.OPERATOR_NAMESPACE}:ferryman"
CONTROL_PLANE = ("kube-apiserver", "etcd")
_WALL_OFFSET = time.time() - time.monotonic()
_TICK = os.sysconf("SC_CLK_TCK")


def to_wall(monotonic: float) -> float:
    """Seconds since the epoch of a ``time.monotonic()`` reading of this process."""
    return monotonic + _WALL_OFFSET


def wall(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (``Z`` or an offset)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- figures -------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def spread(values: list[float], unit: str = "s", digits: int = 3) -> str:
    """``n``, p50, p95, p99 and max of ``values`` as one line; "no values" when empty."""
    if not values:
        return "no values"
    f = f"{{:.{digits}f}}{unit}"
    parts = [f"p{p} {f.format(percentile(values, p))}" for p in (50, 95, 99)]
    return f"n {len(values)}  " + "  ".join(parts) + f"  max {f.format(max(values))}"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Rows as left-aligned text columns under ``header``."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    head = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    return "\n".join([head, "  ".join("-" * w for w in widths), *lines])


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load} (shared machines skew every figure)"


# --- /proc ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (its threads included; 0.0
    once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of process ``pid`` in MiB; (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    kib = {
        line.split(":")[0]: int(line.split()[1])
        for line in status.splitlines()
        if line.startswith(("VmRSS:", "VmHWM:"))
    }
    return kib.get("VmRSS", 0) / 1024, kib.get("VmHWM", 0) / 1024


def control_plane_pids() -> dict[str, int]:
    """Component name -> pid of the local control plane's processes (empty for a cluster
    of FERRYMAN_TEST_KUBECONFIG: its CPU is not on this machine's /proc)."""
    if os.environ.get("FERRYMAN_TEST_KUBECONFIG"):
        return {}
    pids = localcluster.component_pids(localcluster.Layout())
    return {name: pid for name, pid in pids.items() if pid}


@dataclass
class CpuSnapshot:
    """CPU seconds of the operator and of each control-plane component at one moment."""

    at: float
    operator: float
    components: dict[str, float]

    @classmethod
    def take(cls, operator_pid: int) -> CpuSnapshot:
        comps = {name: cpu_seconds(pid) for name, pid in control_plane_pids().items()}
        return cls(time.monotonic(), cpu_seconds(operator_pid), comps)

    def since(self, earlier: CpuSnapshot) -> dict[str, float]:
        """CPU seconds used in between: ``operator``, ``control plane`` (kube-apiserver +
        etcd), each component, and ``elapsed`` (wall seconds)."""
        used = {k: v - earlier.components.get(k, 0.0) for k, v in self.components.items()}
        return {
            "elapsed": self.at - earlier.at,
            "operator": self.operator - earlier.operator,
            "control plane": sum(used.get(k, 0.0) for k in CONTROL_PLANE),
            **used,
        }


def cpu_lines(used: dict[str, float]) -> list[str]:
    """The CPU figures of ``CpuSnapshot.since`` as text, also per minute."""
    minutes = max(used["elapsed"], 1e-9) / 60
    keys = ["operator", "control plane", *sorted(k for k in used if k in CONTROL_PLANE)]
    others = sorted(k for k in used if k not in (*keys, "elapsed"))
    return [
        f"  CPU {k}: {used[k]:.2f} s in {used['elapsed']:.1f} s ({used[k] / minutes:.2f} s/min)"
        for k in [*keys, *others]
    ]


# --- the audit log -------------------------------------------------------------------


@dataclass
class Requests:
    """The operator's requests in a window: counts by (verb, resource) and non-2xx
    answers by (code, verb, resource)."""

    by_verb: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    # (stage timestamp, verb, resource, name) of each write (create/update/patch/delete)
    writes: list[tuple[float, str, str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_verb.values())

    def lines(self, per: float = 1.0, unit: str = "") -> list[str]:
        """The counts as a table, divided by ``per`` (Rollouts, minutes) and labelled
        ``unit``; then the non-2xx answers (absolute)."""
        rows = [
            [verb, resource, str(n), f"{n / per:.2f}"]
            for (verb, resource), n in sorted(self.by_verb.items(), key=lambda kv: -kv[1])
        ]
        rows.append(["all", "", str(self.total), f"{self.total / per:.2f}"])
        out = table(rows, ["verb", "resource", "requests", f"per {unit}" if unit else "ratio"])
        lines = ["  " + line for line in out.splitlines()]
        if self.failed:
            lines.append("  non-2xx answers:")
            for (code, verb, resource), n in sorted(self.failed.items()):
                lines.append(f"    {code} {verb} {resource}: {n}")
        else:
            lines.append("  non-2xx answers: none")
        return lines


class AuditLog:
    """The operator's requests from the audit log of the local control plane
    (``$FERRYMAN_CLUSTER_DIR/logs/audit.log``). Only requests received after this object
    was made are read (it starts at the file's current end)."""

    def __init__(self, path: Path | None = None, user: str = OPERATOR_USER) -> None:
        self.path = path or localcluster.Layout().audit_log
        self.user = user
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self._scanned, self._last = self.offset, 0.0

    def last_request(self) -> float:
        """Wall seconds (``stageTimestamp``) of the user's latest completed request since
        this object was made, Lease requests (leader election's timer) left out; 0.0 when
        there is none (or no log to read)."""
        if not self.available:
            return 0.0
        with self.path.open("rb") as f:
            f.seek(self._scanned)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a line being written: read it whole next time
                self._scanned += len(raw)
                if self.user.encode() not in raw:
                    continue
                event = json.loads(raw)
                if (event.get("objectRef") or {}).get("resource") == "leases":
                    continue  # leader election renews on a timer: not reconcile work
                if (event.get("user") or {}).get("username") == self.user:
                    self._last = max(self._last, wall(event["stageTimestamp"]))
        return self._last

    def wait_quiet(self, quiet: float, deadline: float) -> bool:
        """Wait until the user has made no request for ``quiet`` seconds; False if
        ``deadline`` (monotonic) came first. True at once when there is no log."""
        while time.time() - self.last_request() < quiet:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    @property
    def available(self) -> bool:
        return self.path.exists() and not os.environ.get("FERRYMAN_TEST_KUBECONFIG")

    def requests(self, start: float, end: float) -> Requests:
        """The user's requests received between ``start`` and ``end`` (wall seconds). A
        request counts once: at its ResponseComplete stage, except a watch, counted at
        ResponseStarted (it completes only when it ends, maybe after ``end``)."""
        out = Requests()
        if not self.available:  # no log, or the log of another cluster than the one used
            return out
        time.sleep(0.2)  # the log backend writes as requests complete; let it catch up
        with self.path.open("rb") as f:
            f.seek(self.offset)
            for raw in f:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # a line being written
                if (event.get("user") or {}).get("username") != self.user:
                    continue
                verb = event.get("verb", "")
                wanted = "ResponseStarted" if verb == "watch" else "ResponseComplete"
                if event.get("stage") != wanted:
                    continue
                received = wall(event["requestReceivedTimestamp"])
                if not start <= received <= end:
                    continue
                ref = event.get("objectRef") or {}
                resource = ref.get("resource", event.get("requestURI", "?"))
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                out.by_verb[(verb, resource)] += 1
                code = int((event.get("responseStatus") or {}).get("code", 0))
                if verb != "watch" and not 200 <= code < 300:
                    out.failed[(code, verb, resource)] += 1
                if verb in ("create", "update", "patch", "delete") and 200 <= code < 300:
                    at = wall(event["stageTimestamp"])
                    out.writes.append((at, verb, resource, ref.get("name", "")))
        return out


# --- watches -------------------------------------------------------------------------


class Stamped:
    """Every version of every object of one kind in one namespace, as a list-then-watch
    delivered it: (monotonic receive time, event type, object dict). Re-lists after an
    expiry or a dropped connection."""

    def __init__(self, cluster: Cluster, namespace: str, kind: str) -> None:
        self.cluster, self.namespace, self.kind = cluster, namespace, kind
        self.seen: list[tuple[float, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._listed = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._listed.wait(30):
            raise TimeoutError(f"{kind} in {namespace}: no list within 30 s")

    def _lister(self) -> tuple[Any, tuple[str, ...]]:
        if self.kind == "deployments":
            return self.cluster.apps.list_namespaced_deployment, (self.namespace,)
        group = {"httproutes": "gateway.networking.k8s.io", "rollouts": "ferryman.dev"}
        version = {"httproutes": "v1", "rollouts": "v1alpha1"}
        args = (group[self.kind], version[self.kind], self.namespace, self.kind)
        return self.cluster.custom.list_namespaced_custom_object, args

    def _run(self) -> None:
        api, args = self._lister()
        while not self._stop.is_set():
            try:
                listed: Any = api(*args, _preload_content=False)
                body = json.loads(listed.data)
                for item in body["items"]:
                    self.seen.append((time.monotonic(), "LISTED", item))
                self._listed.set()
                self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                for event in self._watch.stream(
                    api,
                    *args,
                    resource_version=body["metadata"]["resourceVersion"],
                    timeout_seconds=300,
                    _preload_content=False,
                ):
                    obj = event["raw_object"]
                    self.seen.append((time.monotonic(), event["type"], obj))
                    if self._stop.is_set():
                        return
            except Exception:
                time.sleep(0.05)

    def versions(self, name: str) -> list[tuple[float, str, dict[str, Any]]]:
        """The versions of object ``name`` received so far, oldest first."""
        return [v for v in list(self.seen) if v[2]["metadata"]["name"] == name]

    def first(
        self, name: str, after: float, predicate: Callable[[dict[str, Any]], bool]
    ) -> tuple[float, dict[str, Any]] | None:
        """The first version of object ``name`` received at or after ``after``
        (monotonic seconds) that satisfies ``predicate``, with its receive time; a
        deletion is not a version."""
        for at, kind, obj in self.versions(name):
            if at >= after and kind != "DELETED" and predicate(obj):
                return at, obj
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=5)


# --- set-up --------------------------------------------------------------------------


class Bench:
    """The cluster, ferryman's CRDs, one fresh namespace and the operator (as the chart's
    ServiceAccount) watching it. Use as a context manager; leaving it deletes the
    Rollouts while the operator still runs, then stops it and deletes the namespace (and
    stops the local control plane if this process started it)."""

    def __init__(self, prefix: str, settings: dict[str, Any] | None = None) -> None:
        self.prefix = prefix
        self.settings = settings or {}
        self.operator: OperatorProcess | None = None

    def __enter__(self) -> Bench:
        self.cluster, self.started_here = open_cluster()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"ferryman-{self.prefix}-"))
        crds = ROOT / "crds"
        self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=ferryman-crds",
            "-f", str(crds),
        )  # fmt: skip
        names = [f"crd/{p.name.removesuffix('.yaml')}" for p in sorted(crds.glob("*.yaml"))]
        self.cluster.wait_established(*names)
        # The namespace without waiting for its default ServiceAccount (Bench.ready waits,
        # while the operator starts: together they are most of a smoke run's set-up).
        self.namespace = f"{self.prefix}-{uuid.uuid4().hex[:6]}"
        self.cluster.core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=self.namespace, labels={"ferryman.dev/test": "true"}
                )
            )
        )
        settings = self.workdir / "settings.yaml"
        settings.write_text(
            json.dumps(
                {
                    "namespace": rbac.OPERATOR_NAMESPACE,
                    "storageInitializerImage": "",
                    **self.settings,
                }
            )
        )
        # The e2e suite's identity, values included: applying other values would change
        # the rules under the e2e tests that share this cluster (the smoke runs in it).
        identity = rbac.provision(
            self.cluster,
            rbac.render(
                self.cluster.helm_bin,
                rbac.suite_values(),
                workdir=self.workdir / "identity",
            ),
            kubeconfig=self.workdir / "identity" / "kubeconfig",
        )
        self.operator = OperatorProcess(
            self.cluster, namespaces=[self.namespace], log_dir=self.workdir / "operator",
            args=[f"--settings={settings}"], kubeconfig=identity.kubeconfig,
        ).start(wait=False)  # fmt: skip
        wait_for(
            lambda: self.cluster._has_default_sa(self.namespace),
            timeout=30,
            message=f"default ServiceAccount in {self.namespace}",
        )
        self.operator.wait_live()
        return self

    @property
    def pid(self) -> int:
        assert self.operator is not None and self.operator.proc is not None
        return self.operator.proc.pid

    def __exit__(self, *exc: object) -> None:
        try:
            self.cluster.kubectl(
                "delete", "rollout.ferryman.dev", "--all", "-n", self.namespace,
                "--wait=true", "--timeout=120s", check=False, timeout=180,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            # 1,000 Rollouts can take longer; delete_namespace takes the finalizers off.
            print("cleanup: Rollouts not all gone within 180 s", file=sys.stderr)
        finally:
            if self.operator is not None:
                self.operator.stop()
            self.cluster.delete_namespace(self.namespace)
            if self.started_here:
                localcluster.down()


# --- appended by scale12 (issue 12 §1): one object's writes with both audit timestamps --


def object_writes(
    log: AuditLog, resource: str, namespace: str, name: str, start: float, end: float
) -> list[tuple[float, float, str]]:
    """The user's successful writes (create/update/patch/delete) of one object received
    between ``start`` and ``end`` (wall seconds): (``requestReceivedTimestamp``,
    ``stageTimestamp`` of ResponseComplete, verb), oldest first; both timestamps have
    microseconds. Empty when there is no audit log to read."""
    out: list[tuple[float, float, str]] = []
    if not log.available:
        return out
    time.sleep(0.2)  # let the log backend catch up
    with log.path.open("rb") as f:
        f.seek(log.offset)
        for raw in f:
            if name.encode() not in raw or log.user.encode() not in raw:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            ref = event.get("objectRef") or {}
            if (
                (event.get("user") or {}).get("username") != log.user
                or event.get("stage") != "ResponseComplete"
                or ref.get("resource") != resource
                or ref.get("namespace") != namespace
                or ref.get("name") != name
                or ref.get("subresource")
                or event.get("verb") not in ("create", "update", "patch", "delete")
                or not 200 <= int((event.get("responseStatus") or {}).get("code", 0)) < 300
            ):
                continue
            received = wall(event["requestReceivedTimestamp"])
            if start <= received <= end:
                out.append((received, wall(event["stageTimestamp"]), event["verb"]))
    return sorted(out)
