"""A route in Git shared with ferryman (issue 15 §1), with real Argo CD: the platform
team's HTTPRoute is in the same repository as the Rollout that names its rule
"predict"; the Application (automated sync, self-heal) carries the ``ignoreDifferences``
of docs/traffic-shared-routes.md (read from that page) and ``RespectIgnoreDifferences=true``,
and the route in Git spells out what the API server defaults inside ``rules``, as that
page asks.

1. A commit with 1.0.0: Argo CD syncs the route and the Rollout, ferryman moves the named
   rule to the stable version's Service.
2. A commit that targets 1.1.0: Argo CD syncs it (the route too: a sync applies every
   resource) while ferryman starts the canary, and every state of the route meanwhile
   carries ferryman's version Services, never Git's backend. Paused at 50%, for two
   reconciliation periods there is no fight: the route is not written at all (one
   resourceVersion, the named rule at 50/50), the app stays Synced on that commit with
   no new sync operation, and ``argocd app diff`` finds nothing.
3. A commit by the platform team that changes their route outside ``rules`` (a hostname
   and a label): Argo CD syncs it, it is live, and the named rule carries ferryman's
   weights in every state the API server shows meanwhile.

Checked by hand: without ``RespectIgnoreDifferences=true`` step 2 fails (the sync writes
Git's ``fraud`` backend on the named rule, ferryman writes its weights back on the next
event); without the defaults spelled out the app never becomes Synced on step 2's commit
(the route OutOfSync, self-heal syncing it again and again).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, cast

import pytest

from e2e import rollouts as r
from e2e.test_shared_routes import ROUTE, SHARED, platform_route
from harness.argocd_loop import ArgoCD, GitServer, dump, summary
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess
from unit.test_shared_routes import documented_ignores

pytestmark = pytest.mark.usefixtures("ferryman_crds")

APP = "shared"
QUIET_S = 12  # two of the controller's 5 s reconciliation periods, and some
HALF = {"fraud-1-0-0": 50, "fraud-1-1-0": 50}
OWNERS_HOST = "ml-eu.acme.example"


def wave(obj: dict[str, Any], n: int) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = str(n)
    return obj


def repo(target: str, owners_change: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The ModelVersions and the platform team's route (wave 0; the route's predict rule
    points at the model's live Service in Git), the Rollout naming that rule (wave 1)."""
    route = platform_route()
    for rule in route["spec"]["rules"]:  # as docs/traffic-shared-routes.md asks
        for ref in rule["backendRefs"]:
            ref.update(group="", kind="Service")
    if owners_change:
        route["spec"]["hostnames"].append(OWNERS_HOST)
        route["metadata"]["labels"]["tier"] = "eu"
    return {
        "ml/modelversions.yaml": [wave(mv, 0) for mv in r.versions("1.0.0", "1.1.0")],
        "ml/route.yaml": [wave(route, 0)],
        "ml/rollout.yaml": [wave(r.rollout(target, routing=SHARED), 1)],
    }


def app_ignores() -> dict[str, Any]:
    """The Application's part from docs/traffic-shared-routes.md: its HTTPRoute
    expressions (for a model whose version Services are ``fraud-<version>``) and the
    sync option."""
    expressions = [
        e.replace("fraud-detector-", "fraud-") for e in documented_ignores()["HTTPRoute"]
    ]
    return {
        "ignoreDifferences": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "HTTPRoute",
                "name": ROUTE,
                "jqPathExpressions": expressions,
            }
        ],
        "syncPolicy": {"syncOptions": ["RespectIgnoreDifferences=true"]},
    }


def explain(argocd: ArgoCD) -> str:
    app = argocd.app(APP)
    st = app.get("status") or {}
    diff = argocd.cli_raw("app", "diff", APP)
    return (
        f"{dump(app)}\n{json.dumps(st.get('operationState'))}\n"
        f"{json.dumps(st.get('conditions'))}\ndiff:\n{diff.stdout}{diff.stderr}"
    )


def synced_on(argocd: ArgoCD, sha: str) -> dict[str, Any]:
    """The Application once its last sync operation applied ``sha`` and it is Synced."""

    def done() -> dict[str, Any] | None:
        argocd.check()
        s = summary(argocd.app(APP))
        ok = s["sync"] == "Synced" and s["revision"] == sha and s["operation"] == "Succeeded"
        return s if ok and s["operation_revision"] == sha else None

    try:
        return wait_for(done, timeout=120, interval=0.5, message=f"app synced on {sha[:8]}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{explain(argocd)}") from e


def accept(cluster: Cluster, ns: str) -> None:
    """Play the Gateway controller the local control plane has not: once the route
    exists, mark it Accepted with resolved references (Argo CD's HTTPRoute health check
    waits for that, and the Rollout's sync wave waits for the route's health)."""
    wait_for(
        lambda: cluster.get_json("httproute", ROUTE, ns) is not None,
        timeout=90,
        message="the route synced",
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [
        {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": now}
        for t in ("Accepted", "ResolvedRefs")
    ]
    parent = {
        "parentRef": {"name": "ml-gateway"},
        "controllerName": "ferryman.dev/test-gateway",
        "conditions": conditions,
    }
    cluster.kubectl(
        "patch", "httproute", ROUTE, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"parents": [parent]}}),
    )  # fmt: skip


def predict(obj: dict[str, Any] | None) -> dict[str, int] | None:
    """The named rule's backend weights in a route object (None: no route or no rule)."""
    if obj is None:
        return None
    rule = [x for x in obj["spec"]["rules"] if x.get("name") == "predict"]
    return {b["name"]: b.get("weight", 1) for b in rule[0]["backendRefs"]} if rule else None


def started(argocd: ArgoCD) -> str | None:
    """When the Application's last sync operation started (a new sync changes it)."""
    return ((argocd.app(APP).get("status") or {}).get("operationState") or {}).get("startedAt")


class RouteStates:
    """Every state of the route the API server shows from ``start`` until ``stop`` (a
    list, then watches resumed from the last resourceVersion: no state is missed, even
    one that lasts a moment); bounded by ``limit`` seconds."""

    def __init__(self, cluster: Cluster, ns: str, limit: float = 150) -> None:
        self.cluster, self.ns, self.limit = cluster, ns, limit
        self.states: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from kubernetes import watch

        args = ("gateway.networking.k8s.io", "v1", self.ns, "httproutes")
        selector = f"metadata.name={ROUTE}"
        listing = self.cluster.custom.list_namespaced_custom_object
        deadline = time.monotonic() + self.limit
        try:
            listed = cast(dict[str, Any], listing(*args, field_selector=selector))
            self.states += listed["items"]
            rv = listed["metadata"]["resourceVersion"]
            while not self.done.is_set() and time.monotonic() < deadline:
                for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                    listing, *args, field_selector=selector, resource_version=rv,
                    timeout_seconds=1, _request_timeout=5,
                ):  # fmt: skip
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {event['object']}")
                    rv = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.states.append(event["object"])
        except BaseException as e:  # reported by stop()
            self.error = e

    def start(self) -> RouteStates:
        self.thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self.done.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the route's watch did not end"
        if self.error is not None:
            raise AssertionError(f"watching the route failed: {self.error!r}")
        return self.states


def test_a_shared_route_in_git_and_ferrymans_weights_do_not_fight(
    cluster: Cluster,
    namespace: str,
    argocd: ArgoCD,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    ns = namespace
    first = git_server.commit(repo("1.0.0"), "fraud 1.0.0 on the platform route")
    argocd.create_app(APP, git_server.url, "ml", ns, app_ignores())
    try:
        # 1. 1.0.0 stable on the named rule.
        accept(cluster, ns)
        synced_on(argocd, first)
        wait_for(
            lambda: (
                predict(cluster.get_json("httproute", ROUTE, ns)) == {"fraud-1-0-0": 100}
                and r.status(cluster, ns).get("phase") == "Healthy"
            ),
            timeout=90,
            message="1.0.0 on the named rule",
        )

        # 2. A canary of 1.1.0, paused at 50%; the sync applied the route too, and the
        # named rule never carried Git's backends meanwhile.
        recording = RouteStates(cluster, ns).start()
        second = git_server.commit(repo("1.1.0"), "fraud 1.1.0")
        argocd.refresh(APP)
        synced = synced_on(argocd, second)
        wait_for(
            lambda: (
                predict(cluster.get_json("httproute", ROUTE, ns)) == HALF
                and r.status(cluster, ns).get("phase") == "Paused"
            ),
            timeout=90,
            message="1.1.0 at 50% on the named rule",
        )
        weights = [predict(o) for o in recording.stop()]
        versions = {"fraud-1-0-0", "fraud-1-1-0"}  # ferryman's Services, never Git's "fraud"
        assert all(w and set(w) <= versions and sum(w.values()) == 100 for w in weights), weights
        # No fight: nobody writes the route in the window (every state the API server
        # shows has one resourceVersion and ferryman's weights), and Argo CD, sampled
        # meanwhile, neither syncs again nor sees anything OutOfSync.
        states = r.record(cluster, ns, "httproute__public", QUIET_S)
        op_started = started(argocd)
        samples = 0
        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline:
            argocd.check()
            s = summary(argocd.app(APP))
            assert s["sync"] == "Synced" and s["revision"] == second, explain(argocd)
            assert s["history"] == synced["history"], explain(argocd)
            assert s["resources"].get(f"HTTPRoute/{ROUTE}", ("?",))[0] == "Synced", s
            assert s["health"] in ("Healthy", "Suspended"), s  # Suspended: paused canary
            assert started(argocd) == op_started, explain(argocd)
            samples += 1
            time.sleep(1)
        assert samples >= 3, samples  # the window was sampled, not skipped
        seen = states()
        assert [predict(o) for o in seen] == [HALF] * len(seen), seen
        versions = {o["metadata"]["resourceVersion"] for o in seen}
        assert len(versions) == 1, f"the route was written in the quiet window: {versions}"
        diff = argocd.cli_raw("app", "diff", APP)
        assert diff.returncode == 0, diff.stdout + diff.stderr

        # 3. The platform team changes their route in Git: synced, live, and ferryman's
        # weights on every state of the route meanwhile.
        recording = RouteStates(cluster, ns).start()
        third = git_server.commit(repo("1.1.0", owners_change=True), "public: EU hostname")

        def owners_live() -> bool:
            live = cluster.get_json("httproute", ROUTE, ns) or {"spec": {}, "metadata": {}}
            return OWNERS_HOST in live["spec"].get("hostnames", []) and (
                live["metadata"].get("labels", {}).get("tier") == "eu"
            )

        argocd.refresh(APP)
        synced_on(argocd, third)
        wait_for(owners_live, timeout=30, message="the owners' change live")
        seen = recording.stop()
        weights = [predict(o) for o in seen]
        assert any(OWNERS_HOST in o["spec"]["hostnames"] for o in seen), seen  # in the window
        assert len(seen) >= 2 and weights == [HALF] * len(weights), weights
        assert r.status(cluster, ns).get("phase") == "Paused"
        diff = argocd.cli_raw("app", "diff", APP)
        assert diff.returncode == 0, diff.stdout + diff.stderr
    finally:
        argocd.delete_app(APP)
