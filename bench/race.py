"""Side-by-side race: ferryman against Argo Rollouts v1.10.1 and Flagger v1.44.0 on the same
local control plane, the same Prometheus, the same simulated data plane and the same
watchers (issue 12 §3).

Why it exists: "faster than the peers" means nothing until both run the same canary on the
same API server and are timed by the same clock. The peers are built by
bench/peers/build.sh (cached, not part of ``make test``); both bind their HTTP ports to
every interface with no host flag, so the whole race (control plane, Prometheus, data
plane, the Flagger gate, each controller) runs inside a private network namespace that
has only loopback: this script re-executes itself through hack/netns.sh when it is not
already in one.

One controller at a time, each in a namespace of its own (bench/race_tools.py for the
manifests and settings). Scenarios, each bounded by ``--time-limit``:

a. a 3-step canary that promotes (20 -> 40 -> 60 -> full, each step held until
   promoted; the race promotes as soon as it sees the step held): target write ->
   first candidate pod received (pod watch); promote written -> next route weights
   received (route watch) and -> the controller's route write (audit ``stageTimestamp``);
   target write -> fully promoted.
b. the candidate answers 50% errors from the start: breach first visible in Prometheus
   (the race's own query, polled every 0.05 s) -> route 100% stable received (watch).
c. ``--wave`` objects retargeted at once: target write -> first candidate pod received,
   and -> the controller's first write for that object (audit).

For each: the controller's API requests (audit log, by its ServiceAccount), its CPU
seconds and RSS (/proc), and the 1-minute load average. Figures go to stdout and, with
``--json``, to a file; ``--report FILE...`` prints the table of saved runs again (several
files: one table).

Run: ``python -m bench.race`` from the repository root (root or unprivileged user
namespaces needed for hack/netns.sh). ``--tools``, ``--scenarios a,b,c``, ``--wave 50``,
``--repeat N`` (runs of a and b; the table shows each figure's median),
``--time-limit 240`` (per scenario). The control plane is its own: FERRYMAN_CLUSTER_DIR
defaults to ``$FERRYMAN_CACHE/race-cluster`` and is torn down at the end. Exit 0 when
every scenario ran, 2 otherwise. See docs/benchmarks.md, "Side by side".
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests", ROOT / "hack" / "cluster"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
os.environ.setdefault(
    "FERRYMAN_CLUSTER_DIR",
    str(Path(os.environ.get("FERRYMAN_CACHE", Path.home() / ".cache/ferryman")) / "race-cluster"),
)

import localcluster  # noqa: E402

from bench import race_tools as rt  # noqa: E402
from bench.harness import (  # noqa: E402
    OPERATOR_USER,
    AuditLog,
    Stamped,
    cpu_seconds,
    memory_mib,
    to_wall,
)
from bench.race_figures import (  # noqa: E402
    reactions,
    render,
    replica_splits,
    route_weights,
    share,
    summary,
)
from harness import rbac  # noqa: E402
from harness.dataplane import DataPlane  # noqa: E402
from harness.kube import Cluster, open_cluster, wait_for  # noqa: E402
from harness.net import free_port  # noqa: E402
from harness.operator import OperatorProcess  # noqa: E402
from harness.prometheus import PrometheusServer  # noqa: E402

PAIRS = {  # tool -> routers it races on ("service": plain Services, the replica ratio)
    "ferryman": ("gatewayapi", "istio", "service"),
    "argo-rollouts": ("istio", "service"),
    "flagger": ("gatewayapi", "istio"),  # Flagger's plain-Service mode has no canary weights
}
KINDS = {
    "pods": ("", "v1", "pods"),
    "httproutes": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "virtualservices": ("networking.istio.io", "v1", "virtualservices"),
    "deployments": ("apps", "v1", "deployments"),
    "replicasets": ("apps", "v1", "replicasets"),
}


def isolated() -> bool:
    """Whether this process's network namespace has only the loopback interface."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class Watch(Stamped):
    """harness.Stamped for any kind: (group, version, plural); core kinds have group ""."""

    def __init__(self, cluster: Cluster, namespace: str, gvp: tuple[str, str, str]) -> None:
        self.gvp = gvp
        super().__init__(cluster, namespace, gvp[2])

    def _lister(self) -> tuple[Any, tuple[str, ...]]:
        group, version, plural = self.gvp
        if plural == "pods":
            return self.cluster.core.list_namespaced_pod, (self.namespace,)
        return self.cluster.custom.list_namespaced_custom_object, (
            group, version, self.namespace, plural,
        )  # fmt: skip

    def latest(self) -> dict[str, dict[str, Any]]:
        """Name -> the newest version received of each object (deleted ones left out)."""
        out: dict[str, dict[str, Any]] = {}
        for _, kind, obj in list(self.seen):
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                out.pop(name, None)
            else:
                out[name] = obj
        return out


class Replicas(Watch):
    """With plain Services the split is the replica ratio, so the "route" is the
    workloads (ferryman's Deployments, Argo Rollouts' ReplicaSets) of one object: each
    event of one of them gives a version of the split, ``race_figures.SPLIT``, whose
    weights are each side's ``spec.replicas`` (the controller's write, not its pods)."""

    def __init__(self, cluster: Cluster, namespace: str, plural: str, tool: rt.Tool) -> None:
        self.tool = tool
        super().__init__(cluster, namespace, KINDS[plural])

    def versions(self, name: str) -> list[tuple[float, str, dict[str, Any]]]:
        return replica_splits(list(self.seen), lambda o: self.tool.workload_side(o, name))


def route_watch(tool: rt.Tool, setup: rt.Setup, name: str) -> Watch:
    """A watch of object ``name``'s route (its workloads with plain Services)."""
    plural, _ = tool.route(setup, name)
    if setup.router == "service":
        return Replicas(setup.cluster, setup.namespace, plural, tool)
    return Watch(setup.cluster, setup.namespace, KINDS[plural])


def is_route_write(setup: rt.Setup, plural: str, route: str, resource: str, name: str) -> bool:
    """Whether an audited write of ``resource`` ``name`` is a write of route ``route``
    (of ``plural``): the object itself, or with plain Services any of its workloads
    (named ``<route>-...``)."""
    if setup.router == "service":
        return resource == plural and name.startswith(f"{route}-")
    return resource == plural and name == route


class Gate:
    """Flagger's confirm-traffic-increase / confirm-promotion webhook on 127.0.0.1: a POST
    for Canary ``name`` whose webhook metadata says ``gate: <kind>`` answers 200 once per
    ``open(name, kind)``, 403 otherwise."""

    def __init__(self) -> None:
        self.opened: dict[str, int] = {}
        self.lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)) or 0)
                payload = json.loads(body or b"{}") or {}
                kind = (payload.get("metadata") or {}).get("gate", "")
                key = f"{payload.get('name', '')}/{kind}"
                with gate.lock:
                    ok = gate.opened.get(key, 0) > 0
                    if ok:
                        gate.opened[key] -= 1
                self.send_response(200 if ok else 403)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/gate"

    def open(self, name: str, kind: str) -> None:
        with self.lock:
            key = f"{name}/{kind}"
            self.opened[key] = self.opened.get(key, 0) + 1


class RaceDataPlane(DataPlane):
    """harness.DataPlane for the peers' routes: a backend Service whose name ends with
    ``-canary`` is version "canary", any other "stable" (ferryman's Services carry their
    version in an annotation, which the base class reads). With plain Services
    (``split`` set) each version's share is its side's share of the replicas."""

    by_suffix: bool = False
    split: Any = None  # () -> {side: replicas}, e.g. the latest of a Replicas watch
    side_versions: dict[str, str] | None = None  # side -> version label

    def _read_shares(self) -> dict[str, float]:
        if self.split is None:
            return super()._read_shares()
        replicas = self.split()
        total = sum(replicas.values())
        versions = self.side_versions or {}
        return {versions.get(s, s): n / total for s, n in replicas.items() if total > 0}

    def _version_of(self, service: str) -> str | None:
        if self.by_suffix:
            return "canary" if service.endswith("-canary") else "stable"
        return super()._version_of(service)


class Controller:
    """One controller process on the race's cluster: ferryman through OperatorProcess (as
    the chart's ServiceAccount), a peer through its binary (as a ServiceAccount bound to
    cluster-admin). ``user`` is its audit user name."""

    def __init__(self, tool: rt.Tool, setup: rt.Setup) -> None:
        self.tool, self.setup = tool, setup
        work = setup.workdir / tool.name
        work.mkdir(parents=True, exist_ok=True)
        self.operator: OperatorProcess | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        if isinstance(tool, rt.Ferryman):
            settings = work / "settings.yaml"
            settings.write_text(json.dumps({
                "namespace": rbac.OPERATOR_NAMESPACE, "storageInitializerImage": "",
                "providers": {"default": {"address": setup.prometheus}},
            }))  # fmt: skip
            identity = rbac.provision(
                setup.cluster,
                rbac.render(setup.cluster.helm_bin, rbac.suite_values(),
                            workdir=work / "identity"),
                kubeconfig=work / "identity" / "kubeconfig",
            )  # fmt: skip
            self.user = OPERATOR_USER
            self.operator = OperatorProcess(
                setup.cluster, namespaces=[setup.namespace], log_dir=work,
                args=[f"--settings={settings}"], kubeconfig=identity.kubeconfig,
            ).start()  # fmt: skip
        else:
            self.user = rt.peer_identity(setup.cluster, tool.name, work / "kubeconfig")
            self.log = work / f"{tool.name}-{setup.router}.log"
            self.proc = rt.start_peer(tool, setup, work / "kubeconfig", self.log)
            time.sleep(3)
            if self.proc.poll() is not None:
                raise RuntimeError(f"{tool.name} exited: {self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        proc = self.operator.proc if self.operator else self.proc
        assert proc is not None
        return proc.pid

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def create(setup: rt.Setup, docs: list[dict[str, Any]]) -> None:
    setup.cluster.kubectl(
        "create", "-n", setup.namespace, "-f", "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}), timeout=300,
    )  # fmt: skip


def wait_all(main: Watch, names: list[str], test: Any, deadline: float, what: str) -> float:
    """Monotonic time when ``test`` held for the newest version of every one of ``names``;
    AssertionError at ``deadline``."""

    def done() -> bool:
        latest = main.latest()
        return all(n in latest and test(latest[n]) for n in names)

    wait_for(done, timeout=max(1.0, deadline - time.monotonic()), interval=0.05, message=what)
    return time.monotonic()


def measured(ctl: Controller, audit: AuditLog, t0: float, cpu0: float, n: int) -> dict[str, Any]:
    """The controller's requests since wall time ``t0`` (total, per object, non-2xx), CPU
    seconds since ``cpu0`` and RSS now, and the load average."""
    req = audit.requests(t0, time.time())
    rss, peak = memory_mib(ctl.pid)
    return {
        "requests": req.total, "requests_per_object": req.total / n,
        "non_2xx": sum(req.failed.values()),
        "non_2xx_by": {f"{c} {v} {r}": k for (c, v, r), k in req.failed.most_common(5)},
        "by_verb": {f"{v} {r}": c for (v, r), c in req.by_verb.most_common(8)},
        "cpu_s": cpu_seconds(ctl.pid) - cpu0, "rss_mib": rss, "peak_rss_mib": peak,
        "load1": os.getloadavg()[0],
    }  # fmt: skip


def scenario_a(ctl: Controller, limit: float, name: str = "a0") -> dict[str, Any]:
    tool, setup = ctl.tool, ctl.setup
    deadline = time.monotonic() + limit
    main = Watch(setup.cluster, setup.namespace, tool.main_kind())
    pods = Watch(setup.cluster, setup.namespace, KINDS["pods"])
    route_kind, route_name = tool.route(setup, name)
    routes = route_watch(tool, setup, name)
    try:
        create(setup, tool.objects(setup, name, analysis=False))
        wait_all(main, [name], tool.ready, deadline, f"{name} ready")
        audit = AuditLog(user=ctl.user)
        t0, cpu0 = time.time(), cpu_seconds(ctl.pid)
        before = main.latest()[name]
        sent = time.monotonic()
        tool.retarget(setup, name)
        written = time.monotonic()
        promoted: dict[str, float] = {}
        while time.monotonic() < deadline:
            obj = main.latest().get(name) or {}
            if obj and tool.finished(obj, before):
                break
            key = tool.pause_key(obj) if obj else None
            if key is not None and key not in promoted:
                tool.promote(setup, name)
                promoted[key] = time.monotonic()
            time.sleep(0.02)
        finished = time.monotonic()
        # From the patch's response; a pod received before the response (the controller
        # beat the client) counts 0.0, not as missing.
        first_pod = [at for at, _, p in pods.seen if at >= sent and tool.candidate_pod(p)]
        changes = [(at, route_weights(o)) for at, _, o in routes.versions(route_name)]
        steps = [d for d in reactions(sorted(promoted.values()), changes) if d is not None]
        out = measured(ctl, audit, t0, cpu0, 1)
        writes = sorted(
            at for at, verb, res, nm in audit.requests(t0, time.time()).writes
            if is_route_write(setup, route_kind, route_name, res, nm)
        )  # fmt: skip
        audit_steps = [
            min(w for w in writes if w >= to_wall(m)) - to_wall(m)
            for m in sorted(promoted.values())
            if any(w >= to_wall(m) for w in writes)
        ]
        out.update({
            "reaction_s": max(0.0, min(first_pod) - written) if first_pod else None,
            "step_watch": summary(steps), "step_audit": summary(audit_steps),
            "promotions": len(promoted),
            "total_s": finished - written if finished < deadline else None,
            "route_versions": [w for _, w in changes][-6:],
        })  # fmt: skip
        if out["total_s"] is None:
            out["error"] = f"not fully promoted within {limit:.0f}s ({len(promoted)} promotes)"
        return out
    finally:
        for w in (main, pods, routes):
            w.stop()


def scenario_b(
    ctl: Controller, prom: PrometheusServer, limit: float, name: str = "b0"
) -> dict[str, Any]:
    tool, setup = ctl.tool, ctl.setup
    deadline = time.monotonic() + limit
    dp = RaceDataPlane(setup.cluster, setup.namespace, rollout=name, model=name)
    dp.by_suffix = not isinstance(tool, rt.Ferryman)
    dp.start()
    prom.add_target(f"dp-{setup.namespace}", dp.address)
    main = Watch(setup.cluster, setup.namespace, tool.main_kind())
    _, route_name = tool.route(setup, name)
    routes = route_watch(tool, setup, name)
    if setup.router == "service":
        dp.side_versions = tool.side_versions(name)
        dp.split = lambda: route_weights((routes.versions(route_name) or [(0, "", {})])[-1][2])
    try:
        create(setup, tool.objects(setup, name, analysis=True))
        wait_all(main, [name], tool.ready, deadline, f"{name} ready")
        dp.set(tool.candidate_label(), error_rate=0.5)
        audit = AuditLog(user=ctl.user)
        t0, cpu0 = time.time(), cpu_seconds(ctl.pid)
        tool.retarget(setup, name)
        written = time.monotonic()
        query = rt.error_rate(setup.namespace, name, tool.candidate_label())
        breach = None
        while breach is None and time.monotonic() < deadline:
            found = prom.query(query)
            if found and float(found[0]["value"][1]) > 0.05:
                breach = time.monotonic()
            time.sleep(0.05)
        assert breach is not None, "no breach visible in Prometheus"

        def back() -> float | None:
            seen_canary = False
            for at, kind, o in routes.versions(route_name):
                if at < written or kind == "DELETED":
                    continue
                s = share(route_weights(o), tool.candidate_suffix)
                if s > 0:
                    seen_canary = True
                elif seen_canary:
                    return at
            return None

        stable_at = wait_for(back, timeout=max(1.0, deadline - time.monotonic()),
                             interval=0.05, message="route 100% stable")  # fmt: skip
        out = measured(ctl, audit, t0, cpu0, 1)
        out.update({
            "breach_after_target_s": breach - written,
            "breach_to_stable_s": stable_at - breach,
        })  # fmt: skip
        return out
    finally:
        for w in (main, routes):
            w.stop()
        prom.remove_target(f"dp-{setup.namespace}")
        dp.stop()


def scenario_c(ctl: Controller, n: int, limit: float) -> dict[str, Any]:
    tool, setup = ctl.tool, ctl.setup
    names = [f"c{i:03d}" for i in range(n)]
    deadline = time.monotonic() + limit
    main = Watch(setup.cluster, setup.namespace, tool.main_kind())
    pods = Watch(setup.cluster, setup.namespace, KINDS["pods"])
    try:
        create(setup, [d for m in names for d in tool.objects(setup, m, analysis=False)])
        made = time.monotonic()
        wait_all(main, names, tool.ready, deadline, f"{n} ready")
        to_ready = time.monotonic() - made
        audit = AuditLog(user=ctl.user)
        t0, cpu0 = time.time(), cpu_seconds(ctl.pid)
        written: dict[str, float] = {}
        for m in names:
            tool.retarget(setup, m)
            written[m] = time.monotonic()

        def owner(pod: dict[str, Any]) -> str:
            labels = pod["metadata"].get("labels") or {}
            return str(labels.get("app") or labels.get("ferryman.dev/model") or "")

        def reacted() -> dict[str, float] | None:
            first: dict[str, float] = {}
            for at, _, p in list(pods.seen):
                m = owner(p)
                if m in written and at >= written[m] and tool.candidate_pod(p):
                    first.setdefault(m, at - written[m])
            return first if len(first) == n else None

        try:
            first = wait_for(reacted, timeout=max(1.0, deadline - time.monotonic()),
                             interval=0.1, message="a candidate pod for each")  # fmt: skip
        except AssertionError:
            first = {}
        out = measured(ctl, audit, t0, cpu0, n)
        # The controller's own first write for each object after its target write
        # (audit stageTimestamp): its reaction without the controller-manager, scheduler
        # and kwok that turn that write into a pod.
        writes = audit.requests(t0, time.time()).writes
        acted = []
        for m, at in written.items():
            mine = [w for w, _, _, nm in writes if w >= to_wall(at) and nm.startswith(m)]
            if mine:
                acted.append(min(mine) - to_wall(at))
        out["first_write"] = summary(acted)
        out.update({"objects": n, "to_ready_s": to_ready, "reaction": summary(list(first.values())),
                    "wave_s": max(written.values()) - min(written.values())})  # fmt: skip
        return out
    finally:
        for w in (main, pods):
            w.stop()


def make_tool(name: str, gate: Gate) -> rt.Tool:
    if name == "ferryman":
        return rt.Ferryman()
    built = subprocess.run(
        [str(ROOT / "bench/peers/build.sh"), name], capture_output=True, text=True, check=False
    )  # cached: no network needed; a missing build fails here, inside the namespace
    if built.returncode != 0:
        raise RuntimeError(f"{name} not built (run bench/peers/build.sh outside): {built.stderr}")
    path = Path(built.stdout.strip().splitlines()[-1])
    return rt.ArgoRollouts(path) if name == "argo-rollouts" else rt.Flagger(path, gate)


def race(args: argparse.Namespace) -> list[dict[str, Any]]:
    layout = localcluster.Layout()
    localcluster.down(layout, quiet=True)  # leftovers of an earlier race in this directory
    cluster, _ = open_cluster()
    work = Path(tempfile.mkdtemp(prefix="ferryman-race-"))
    prom = PrometheusServer(work / "prometheus")
    prom.start()
    gate = Gate()
    results: list[dict[str, Any]] = []
    try:
        for tool_name in args.tools:
            for router in args.routers or PAIRS[tool_name]:
                if router not in PAIRS[tool_name]:
                    continue
                ns = cluster.create_namespace(f"race-{tool_name}-{router}")
                setup = rt.Setup(cluster, ns, router, prom.url, gate.url, work)
                row: dict[str, Any] = {"tool": tool_name, "router": router}
                ctl = None
                try:
                    tool = make_tool(tool_name, gate)
                    tool.install(setup)
                    ctl = Controller(tool, setup)
                    runs = [(sc, i) for sc in args.scenarios
                            for i in range(args.repeat if sc in "ab" else 1)]  # fmt: skip
                    for sc, i in runs:
                        print(f"[race] {tool_name}/{router} scenario {sc} #{i}", flush=True)
                        try:
                            if sc == "a":
                                fig = scenario_a(ctl, args.time_limit, f"a{i}")
                            elif sc == "b":
                                fig = scenario_b(ctl, prom, args.time_limit, f"b{i}")
                            else:
                                fig = scenario_c(ctl, args.wave, args.time_limit)
                        except Exception as e:  # recorded, the race goes on
                            fig = {"error": f"{type(e).__name__}: {e}"[:600]}
                        results.append({**row, "scenario": sc, "run": i, **fig})
                        print(json.dumps(results[-1]), flush=True)
                except Exception as e:
                    results.append({**row, "scenario": "start", "error": f"{e}"[:1500]})
                    print(json.dumps(results[-1]), flush=True)
                finally:
                    if ctl is not None:
                        ctl.stop()
                    cluster.delete_namespace(ns)
    finally:
        prom.stop()
        localcluster.down(layout, quiet=True)
        print(f"[race] logs in {work}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default="ferryman,argo-rollouts,flagger")
    parser.add_argument("--routers", default="", help="gatewayapi,istio (default: each tool's)")
    parser.add_argument("--scenarios", default="a,b,c")
    parser.add_argument("--wave", type=int, default=50, help="objects retargeted at once (c)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (a) and (b) each")
    parser.add_argument("--time-limit", type=float, default=240, help="per scenario (s)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--report", type=Path, nargs="+", help="print the table of saved --json files"
    )
    args = parser.parse_args(argv)
    if args.report:
        print(render([r for f in args.report for r in json.loads(f.read_text())]))
        return 0
    if not isolated():
        netns = str(ROOT / "hack" / "netns.sh")
        os.execv(netns, [netns, sys.executable, "-m", "bench.race", *argv])
    args.tools = [t for t in args.tools.split(",") if t]
    args.routers = [r for r in args.routers.split(",") if r]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    results = race(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(render(results))
    return 0 if results and not any("error" in r for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
