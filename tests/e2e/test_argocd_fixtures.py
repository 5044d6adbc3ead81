"""Argo CD health of real objects: drives Rollouts through every phase, pause reason and
``Available=False`` (one namespace, one operator, all scenarios at once), captures each
status object the API server returns, evaluates its health with Argo CD's own Lua
package (hack/argocd-lua, both ways Argo CD loads a script), and fails when

- a scenario does not reach its phase (the drive itself is broken),
- an object's health is not what docs/gitops.md's table says (or the script errors),
- a phase / pause reason / condition seen here has no committed fixture under
  charts/argocd/resource_customizations/ferryman.dev/<Kind>/testdata/.

With ``FERRYMAN_CAPTURE_ARGOCD_FIXTURES=1`` it (re)writes those fixtures from the captured
objects (volatile metadata stripped) and the health_test.yaml / action_test.yaml that
use them; review the diff before committing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cases.api_cases import model_version
from e2e import rollouts as r
from harness import argocd
from harness.kube import Cluster
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]

CAPTURE = os.environ.get("FERRYMAN_CAPTURE_ARGOCD_FIXTURES") == "1"
NEVER_READY = "ghcr.io/acme/never-ready:1"
ABSENT = "ferryman_argocd_fixture_absent_series"
UNREADY = "3.0.0"

# Every key the drive below must reach.
REQUIRED = {
    "Rollout/WaitingForOperator",
    "Rollout/WaitingForOperator/NewGeneration",
    "Rollout/Healthy",
    "Rollout/Healthy/ShadowStopped",
    "Rollout/Healthy/ExperimentEnded",
    "Rollout/Healthy/Unavailable",
    "Rollout/Healthy/NotificationsFailing",
    "Rollout/Progressing",
    "Rollout/Baking",
    "Rollout/Paused/Step",
    "Rollout/Paused/Manual",
    "Rollout/Paused/Inconclusive",
    "Rollout/Paused/AnalysisError",
    "Rollout/Paused/AwaitingApproval",
    "Rollout/RolledBack",
    "Rollout/Aborted",
    "Rollout/Rejected",
    "Rollout/Invalid",
    "ModelVersion/Registered",
    "ModelVersion/Serving",
    "ModelVersion/Retired",
    "ModelVersion/Retired/Expired",
    "ModelVersion/Duplicate",
}


def mv(model: str, version: str, **spec: Any) -> dict[str, Any]:
    out = model_version(name=f"{model}-{version.replace('.', '-')}", version=version, model=model)
    out["spec"].update(spec)
    return out


def ro(name: str, target: str = "1.0.0", **spec: Any) -> dict[str, Any]:
    out = r.rollout(target, name=name, **spec)
    out["spec"]["model"] = name
    return out


def analysis(query: str, provider: str = "default", **limits: int) -> dict[str, Any]:
    return {
        "provider": provider,
        "interval": "1s",
        "failureLimit": 0,
        "inconclusiveLimit": 0,
        "consecutiveErrorLimit": 0,
        "metrics": [{"name": "m", "query": query, "max": 0.5}],
        **limits,
    }


PAUSE_AT_50 = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
SCENARIOS: dict[str, dict[str, Any]] = {
    # Healthy -> retarget (the patch response lags) -> Paused/Step -> promote -> Baking
    # -> abort (previous still warm) -> Aborted.
    "canary": {"bake": {"duration": "1h"}, "scaleDownDelaySeconds": 600},
    # A candidate that never gets Ready: Progressing until the deadline.
    "stuck": {"progressDeadlineSeconds": 8},
    "fail": {"analysis": analysis("vector(1)")},
    "nodata": {"analysis": analysis(ABSENT)},
    "noprom": {"analysis": analysis("vector(0)", provider="down")},
    "gate": {"gates": {"offlineMetrics": [{"name": "auc", "min": 0.9}]}},
    "shadow": {"strategy": {"shadow": {"mirrorPercent": 10, "duration": "2s", "then": "stop"}}},
    # An A/B test whose two variants convert alike (1,000 users, 100 successes each): its
    # first look rules out a difference of the MDE -> Healthy, ExperimentEnded.
    "abtest": {
        "strategy": {
            "abTest": {
                "users": {"percentOfUsers": {"percent": 50, "userId": {"header": "x-user-id"}}},
                "objective": {
                    "successes": "vector(100)",
                    "trials": "vector(1000)",
                    "direction": "HigherIsBetter",
                    "mde": 0.05,
                },
            }
        },
        "analysis": analysis("vector(0)"),
    },
    # Promoted at once, previous kept warm: undo -> RolledBack.
    "undo": {"strategy": {"canary": {"steps": [{"setWeight": 50}]}}, "scaleDownDelaySeconds": 600},
    "unready": {},
    "invalid": {},
    # Paused/Step -> `pause` -> Paused/Manual.
    "manual": {},
    # Names a webhook endpoint the settings lack: NotificationsDelivered=False (stays
    # on its first version: a retarget would add Paused/Step/NotificationsFailing).
    "notify": {"notifications": [{"endpoint": "missing"}]},
    # An approval gate nobody approves: Paused/AwaitingApproval before any traffic.
    "approval": {"gates": {"approvals": {"count": 1, "groups": ["ml-approvers"]}}},
    # Keeps one version: its 0.1.0 (registered with the others, oldest by semver) is
    # marked Retired, Expired (issue 17 §5).
    "retain": {"retention": {"keepLast": 1}},
}


def manifests() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for name, spec in SCENARIOS.items():
        if name == "invalid":
            objs += [mv(name, "1.0.0"), ro(name, "9.9.9")]
            continue
        if name == "unready":  # a version of its own: set_unready selects pods by version
            objs += [mv(name, UNREADY), ro(name, UNREADY, strategy=PAUSE_AT_50)]
            continue
        extra: dict[str, Any] = {}
        if name == "gate":
            objs += [
                mv(name, "1.0.0", metrics={"auc": 0.95}),
                mv(name, "1.1.0", metrics={"auc": 0.5}),
            ]
        elif name == "stuck":
            objs += [mv(name, "1.0.0"), mv(name, "1.1.0")]
            objs[-1]["spec"]["serving"]["image"] = NEVER_READY
        else:
            objs += [mv(name, "1.0.0"), mv(name, "1.1.0")]
        if name == "retain":
            objs.append(mv(name, "0.1.0"))
        if "strategy" not in spec:
            extra["strategy"] = PAUSE_AT_50
        objs.append(ro(name, **extra, **spec))
    dup = mv("canary", "1.1.0")
    dup["metadata"]["name"] = "canary-copy-1-1-0"
    return [*objs, dup]


class Drive:
    """Polls every Rollout and ModelVersion of the namespace, records the first object seen
    for each fixture key (and a few named ones for action fixtures) and moves each
    scenario on when it reaches the state its next step needs."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.seen: dict[str, dict[str, Any]] = {}
        self.named: dict[str, dict[str, Any]] = {}
        self.done: set[str] = set()

    def items(self, kind: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", kind, "-n", self.ns, "-o", "json", timeout=30)
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    def record(self, obj: dict[str, Any], name: str | None = None) -> None:
        self.seen.setdefault(argocd.fixture_key(obj), obj)
        if name is not None:
            self.named.setdefault(name, obj)

    def once(self, step: str, do: Callable[[], object]) -> None:
        if step not in self.done:
            self.done.add(step)
            do()

    def retarget(self, name: str) -> None:
        out = self.cluster.kubectl(
            "patch", "rollout.ferryman.dev", name, "-n", self.ns, "--type=merge", "-o", "json",
            "-p", json.dumps({"spec": {"target": {"version": "1.1.0"}}}),
        )  # fmt: skip
        self.record(json.loads(out.stdout))  # the API server's answer: status still old

    def tick(self) -> None:
        for obj in self.items("modelversion.ferryman.dev"):
            self.record(obj)
        for obj in self.items("rollout.ferryman.dev"):
            self.record(obj)
            name, st = obj["metadata"]["name"], obj.get("status") or {}
            phase, stable = st.get("phase"), st.get("stableVersion")
            if (
                phase == "Healthy"
                and stable == "1.0.0"
                and name not in ("unready", "invalid", "notify")
            ):
                self.named.setdefault("healthy-first", obj)
                self.once(f"{name}/retarget", lambda n=name: self.retarget(n))  # type: ignore[misc]
            if name == "unready" and phase == "Healthy":
                self.once("unready", lambda: r.set_unready(self.cluster, self.ns, UNREADY))
            if name == "canary" and phase == "Paused":
                self.record(obj, "paused")
                self.once("promote", lambda: r.act(self.cluster, self.ns, "promote", "canary"))
            if name == "canary" and phase == "Baking":
                self.record(obj, "baking")
                self.once("abort", lambda: r.act(self.cluster, self.ns, "abort", "canary"))
            if name == "canary" and phase == "Aborted":
                self.record(obj, "aborted")
            if name == "stuck" and phase == "Progressing" and st.get("candidateVersion"):
                self.record(obj, "progressing")
            reason = (st.get("pause") or {}).get("reason")
            if name == "manual" and phase == "Paused" and reason == "Step":
                self.once("pause", lambda: r.act(self.cluster, self.ns, "pause", "manual"))
            if name == "manual" and phase == "Paused" and reason == "Manual":
                self.record(obj, "paused-manual")
            if name == "approval" and phase == "Paused" and reason == "AwaitingApproval":
                self.record(obj, "paused-approval")
            if name == "undo" and phase == "Healthy" and stable == "1.1.0":
                self.record(obj, "healthy-warm")
                self.once("undo", lambda: r.act(self.cluster, self.ns, "undo", "undo"))

    def missing(self) -> set[str]:
        return REQUIRED - set(self.seen)


@pytest.mark.kwok
def test_every_phase_has_a_fixture_and_the_health_argocd_shows(
    cluster: Cluster,
    namespace: str,
    prometheus: PrometheusServer,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    argocd.binary()  # fail early (with the build log) when the harness cannot be built
    settings = tmp_path / "settings.yaml"
    providers = {"default": {"address": prometheus.url}, "down": {"address": "http://127.0.0.1:9"}}
    settings.write_text(json.dumps({"providers": providers, "storageInitializerImage": ""}))
    cluster.apply(manifests(), namespace=namespace)
    drive = Drive(cluster, namespace)
    drive.tick()  # no operator yet: every object waits for it
    operator_factory(args=[f"--settings={settings}"]).start()
    deadline = time.monotonic() + 180
    while drive.missing() and time.monotonic() < deadline:
        drive.tick()
        time.sleep(0.3)
    assert not drive.missing(), (
        f"never reached: {sorted(drive.missing())}; seen {sorted(drive.seen)}"
    )

    captured = {k: argocd.strip(o, namespace) for k, o in drive.seen.items()}
    named = {k: argocd.strip(o, namespace) for k, o in drive.named.items()}
    if CAPTURE:
        write_fixtures(captured, named)

    # Health, as Argo CD computes it, of every captured object, in both modes.
    files = {}
    for key, obj in captured.items():
        path = tmp_path / (key.replace("/", "-") + ".yaml")
        path.write_text(yaml.safe_dump(obj))
        files[key] = path
    problems = []
    for kind, kind_dir in (("Rollout", argocd.ROLLOUT), ("ModelVersion", argocd.MODELVERSION)):
        keys = [k for k in files if k.startswith(kind + "/")]
        by_file = {str(files[k]): k for k in keys}
        for res in argocd.health(kind_dir, [files[k] for k in keys]):
            key = by_file[res["file"]]
            want = argocd.expected_health(key)
            if res.get("error") or res["status"] != want:
                problems.append(f"{key} [{res['mode']}]: {res} (want {want})")
    committed = argocd.committed_keys()
    problems += [f"{k}: no committed fixture (run with {CAPTURE_ENV}=1)" for k in
                 sorted(set(captured) - committed)]  # fmt: skip
    assert not problems, "\n".join(problems)


CAPTURE_ENV = "FERRYMAN_CAPTURE_ARGOCD_FIXTURES"


def write_fixtures(captured: dict[str, dict[str, Any]], named: dict[str, dict[str, Any]]) -> None:
    """Rewrite testdata from captured objects, then the test files that list them."""
    for key, obj in captured.items():
        kind_dir = argocd.ROLLOUT if key.startswith("Rollout/") else argocd.MODELVERSION
        (kind_dir / "testdata" / (argocd.fixture_name(key) + ".yaml")).write_text(
            argocd.fixture_text(obj, f"captured from a real run ({key})")
        )
    for name, obj in named.items():
        (argocd.ROLLOUT / "actions" / "testdata" / f"{name}.yaml").write_text(
            argocd.fixture_text(obj, "captured from a real run")
        )
    argocd.write_test_files()
