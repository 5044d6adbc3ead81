"""The GitOps loop with real Argo CD (issue 10 §1): an Application with automated sync and
self-heal holds the ModelVersions and the Rollout in a git repository; commits drive
releases, ferryman does everything that moves, and Argo CD shows it without fighting.

1. A commit with 1.0.0: Argo CD syncs, ferryman makes it stable; the app is Healthy.
2. A commit that registers 1.3.0 and targets it starts a canary; at 50% 1.3.0 fails its
   analysis (the data plane's error injection), ferryman rolls back, and Argo CD shows the app
   Degraded with our health check's message, while it stays Synced on that commit: no
   new sync, no resource OutOfSync, nothing of ferryman's tracked or pruned.
3. A commit with a good 1.4.0 pauses at the canary's manual step (Argo CD: Suspended);
   `argocd app actions run ... promote` (Argo CD's own action code path, through
   argocd-server) promotes it, and the app ends Healthy on 1.4.0.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e import rollouts as r
from harness.argocd_loop import ArgoCD, GitServer, dump, summary
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]

APP = "fraud"
SEL = 'namespace="{{namespace}}",version="{{version}}"'
ERRORS = (
    f'(sum(rate(model_requests_total{{{SEL},code="500"}}[3s])) or vector(0)) '
    f"/ sum(rate(model_requests_total{{{SEL}}}[3s]))"
)
SAMPLES = f"sum(increase(model_requests_total{{{SEL}}}[3s]))"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
TRACKING_LABEL = "app.kubernetes.io/instance"
# Long enough for the controller to re-compare the app (RECONCILIATION, 5 s) twice; a
# fight shows sooner: every write to a tracked object makes Argo CD re-compare at once.
QUIET_S = 12


def wave(obj: dict[str, Any], n: int) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = str(n)
    return obj


def repo(versions: list[str], target: str) -> dict[str, list[dict[str, Any]]]:
    """The repository's content: the ModelVersions (wave 0) and the Rollout (wave 1),
    a canary that pauses for a human at 50% and is measured by Prometheus."""
    rollout = r.rollout(
        target,
        analysis={
            "provider": "default",
            "interval": "2s",
            "failureLimit": 1,
            "inconclusiveLimit": 2,
            "consecutiveErrorLimit": 2,
            "minSamples": {"query": SAMPLES, "min": 10},
            "metrics": [{"name": "error-rate", "query": ERRORS, "max": 0.05}],
        },
    )
    return {
        "ml/modelversions.yaml": [wave(mv, 0) for mv in r.versions(*versions)],
        "ml/rollout.yaml": [wave(rollout, 1)],
    }


def synced_on(argocd: ArgoCD, sha: str) -> dict[str, Any]:
    """The Application once its last sync operation applied ``sha`` and it is Synced."""

    def done() -> dict[str, Any] | None:
        argocd.check()
        s = summary(argocd.app(APP))
        ok = s["sync"] == "Synced" and s["revision"] == sha and s["operation"] == "Succeeded"
        return s if ok and s["operation_revision"] == sha else None

    return wait_for(done, timeout=120, interval=0.5, message=f"app synced on {sha[:8]}")


def app_health(argocd: ArgoCD, health: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: (argocd.check() or (s := summary(argocd.app(APP))))["health"] == health and s,
        timeout=timeout,
        interval=0.5,
        message=f"app {health}",
    )


def owned_objects(cluster: Cluster, ns: str) -> dict[str, dict[str, Any]]:
    """kind/name -> metadata of what ferryman created in ``ns`` (Deployments, Services,
    the HTTPRoute)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in ("deployments", "services", "httproutes.gateway.networking.k8s.io"):
        listed = cluster.kubectl("get", kind, "-n", ns, "-o", "json")
        for item in json.loads(listed.stdout)["items"]:
            out[f"{item['kind']}/{item['metadata']['name']}"] = item["metadata"]
    return out


def test_commits_drive_releases_and_argocd_shows_them_without_a_fight(
    cluster: Cluster,
    namespace: str,
    argocd: ArgoCD,
    git_server: GitServer,
    dataplane: DataPlane,
    analysing_operator: OperatorProcess,
) -> None:
    in_git = {"ModelVersion/fraud-1-0-0", "Rollout/fraud"}

    # 1. The first commit: 1.0.0 stable.
    first = git_server.commit(repo(["1.0.0"], "1.0.0"), "fraud 1.0.0")
    argocd.create_app(APP, git_server.url, "ml", namespace)
    try:
        synced_on(argocd, first)
        wait_for(
            lambda: (
                r.status(cluster, namespace).get("stableVersion") == "1.0.0"
                and r.status(cluster, namespace).get("phase") == "Healthy"
            ),
            timeout=90,
            message="1.0.0 stable",
        )
        s = app_health(argocd, "Healthy")
        assert set(s["resources"]) == in_git, dump(argocd.app(APP))

        # 2. Register 1.3.0 and target it; once at 50% (paused for a human), 1.3.0
        # answers 20% errors.
        bad = git_server.commit(repo(["1.0.0", "1.3.0"], "1.3.0"), "fraud 1.3.0")
        argocd.refresh(APP)
        synced_on(argocd, bad)
        wait_for(
            lambda: (r.http_route(cluster, namespace) or {}).get("fraud-1-3-0") == 50,
            timeout=90,
            message="canary of 1.3.0 at 50%",
        )
        dataplane.set("1.3.0", error_rate=0.2)
        wait_for(
            lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
            timeout=90,
            message="1.3.0 RolledBack",
        )
        assert r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
        degraded = app_health(argocd, "Degraded")
        ro = argocd.tree(APP)["Rollout/fraud"]
        assert ro["health"]["status"] == "Degraded", ro
        assert ro["health"]["message"].startswith("RolledBack: "), ro
        assert "1.3.0" in ro["health"]["message"], ro

        # No fight: for two reconciliation periods the app stays Synced on the same
        # commit with the same sync history, every resource in Git Synced, nothing of
        # ferryman's tracked by Argo CD, and ferryman's objects neither pruned nor remade.
        in_git.add("ModelVersion/fraud-1-3-0")
        owned = {k: m["uid"] for k, m in owned_objects(cluster, namespace).items()}
        assert "Deployment/fraud-1-0-0" in owned and "HTTPRoute/fraud" in owned, owned
        generation = cluster.get_json("rollout.ferryman.dev", "fraud", namespace)["metadata"][  # type: ignore[index]
            "generation"
        ]
        seen: list[dict[str, Any]] = []

        def quiet() -> None:
            argocd.check()
            s = summary(argocd.app(APP))
            seen.append(s)
            assert s["sync"] == "Synced" and s["revision"] == bad, dump(argocd.app(APP))
            assert s["history"] == degraded["history"], dump(argocd.app(APP))
            assert s["operation_revision"] == bad, dump(argocd.app(APP))
            assert set(s["resources"]) == in_git, dump(argocd.app(APP))
            assert {v[0] for v in s["resources"].values()} == {"Synced"}, s["resources"]
            assert s["health"] == "Degraded", s

        deadline = time.monotonic() + QUIET_S
        while time.monotonic() < deadline:
            quiet()
            time.sleep(1)
        assert len(seen) >= 3, seen  # the window was sampled, not skipped
        # Argo CD's own diff of live against Git (exit 1 on a difference, 2 on an error).
        diff = argocd.cli_raw("app", "diff", APP)
        assert diff.returncode == 0, diff.stdout + diff.stderr
        assert len(degraded["history"]) == 2, degraded["history"]
        now = owned_objects(cluster, namespace)
        for key, uid in owned.items():
            assert key in now and now[key]["uid"] == uid, f"{key} pruned or recreated"
        for key, meta in now.items():
            assert TRACKING_ANNOTATION not in (meta.get("annotations") or {}), (key, meta)
            assert TRACKING_LABEL not in (meta.get("labels") or {}), (key, meta)
        live = cluster.get_json("rollout.ferryman.dev", "fraud", namespace)
        assert live is not None and live["metadata"]["generation"] == generation
        assert TRACKING_ANNOTATION in live["metadata"]["annotations"]  # Argo CD's, on its own

        # 3. A good 1.4.0: canary, paused for a human (Suspended), promoted by Argo CD.
        good = git_server.commit(repo(["1.0.0", "1.3.0", "1.4.0"], "1.4.0"), "fraud 1.4.0")
        argocd.refresh(APP)
        synced_on(argocd, good)
        wait_for(
            lambda: (
                r.status(cluster, namespace).get("phase") == "Paused"
                and r.http_route(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-4-0": 50}
            ),
            timeout=90,
            message="1.4.0 paused at 50%",
        )
        app_health(argocd, "Suspended")
        listed = argocd.cli(
            "app", "actions", "list", APP, "--kind", "Rollout", "--group", "ferryman.dev"
        )
        assert "promote" in listed, listed
        argocd.cli(
            "app",
            "actions",
            "run",
            APP,
            "promote",
            "--kind",
            "Rollout",
            "--group",
            "ferryman.dev",
            "--resource-name",
            "fraud",
            "--namespace",
            namespace,
        )
        wait_for(
            lambda: (
                r.status(cluster, namespace).get("stableVersion") == "1.4.0"
                and r.status(cluster, namespace).get("phase") == "Healthy"
            ),
            timeout=90,
            message="1.4.0 stable after the promote action",
        )
        last = r.status(cluster, namespace).get("lastAction") or {}
        assert last.get("action") == "promote" and last.get("result") == "Applied", last
        assert last.get("id", "").startswith("argocd-"), last  # the nonce of our Lua action
        assert r.http_route(cluster, namespace) == {"fraud-1-4-0": 100}
        end = app_health(argocd, "Healthy")
        assert end["sync"] == "Synced" and end["revision"] == good, end
        assert end["history"] == [first, bad, good], end["history"]
        diff = argocd.cli_raw("app", "diff", APP)
        assert diff.returncode == 0, diff.stdout + diff.stderr
    finally:
        argocd.delete_app(APP)
