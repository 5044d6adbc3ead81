"""The three controllers of the side-by-side race (bench/race.py): how each is started on
the race's control plane, and its manifests for one canary, written to be equivalent.

Why it exists: ferryman, Argo Rollouts v1.10 and Flagger v1.44 describe the same canary
with different objects (a ferryman Rollout + ModelVersions; an Argo Rollout + two
Services + a VirtualService; a Deployment + a Flagger Canary). Each ``Tool`` turns one
scenario into its own objects and says how to retarget, promote and read it, so the race
itself measures all three the same way.

The canary, for every tool: replicas 1, steps 20% -> 40% -> 60% -> full, each step held
until promoted (ferryman ``pause: {}`` + the promote action; Argo ``pause: {}`` + clearing
``status.pauseConditions``, what ``kubectl argo rollouts promote`` does; Flagger
``confirm-traffic-increase`` and ``confirm-promotion`` webhooks to a gate the race opens).
Analysis (scenario b): the same PromQL error rate of the candidate over [3s] against
max 0.05, at each tool's fastest interval (ferryman 1s, Argo 1s, Flagger 10s: Flagger
raises any interval under 10s to 10s, flagger pkg/apis/flagger/v1beta1/canary.go
``GetAnalysisInterval``), rolling back at the first failed measurement.
Sources: argo-rollouts v1.10.1 pkg/kubectl-argo-rollouts/cmd/promote/promote.go (the
promote patch), flagger v1.44.0 pkg/controller/scheduler.go (when the hooks are called).
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import ROOT
from ferryman.api.annotations import ACTION, ACTION_ID
from harness import rbac
from harness.kube import Cluster
from harness.net import free_port

RS = "race/version"  # the pod label that tells a candidate pod (peers' manifests)
IMAGE = "ghcr.io/acme/onnx-server"
STEPS = (20, 40, 60)
ANALYSIS_INTERVAL = {"ferryman": "1s", "argo-rollouts": "1s", "flagger": "1s"}
FLAGGER_FLOOR_S = 10
SERVICE_REPLICAS = 5  # plain Services: 20/40/60% of 5 replicas is 1/2/3 candidate pods


def error_rate(namespace: str, model: str, version: str) -> str:
    """PromQL: the share of 500s among ``version``'s requests over 3 s (the simulated
    data plane's ``model_requests_total``); 0 while the version has no traffic."""
    sel = f'namespace="{namespace}",model="{model}",version="{version}"'
    return (
        f'(sum(rate(model_requests_total{{{sel},code="500"}}[3s])) / '
        f"sum(rate(model_requests_total{{{sel}}}[3s]))) or vector(0)"
    )


@dataclass
class Setup:
    """What every tool needs of the race: the cluster (admin), the namespace, the router
    (``istio``, ``gatewayapi`` or ``service``: plain Services), Prometheus' URL, the
    Flagger gate's URL, a work dir."""

    cluster: Cluster
    namespace: str
    router: str
    prometheus: str
    gate: str
    workdir: Path

    @property
    def replicas(self) -> int:
        """Replicas of each object: 1, or, with plain Services, where the weight is the
        replica ratio, SERVICE_REPLICAS (each step of STEPS moves at least one pod)."""
        return SERVICE_REPLICAS if self.router == "service" else 1


def peer_identity(cluster: Cluster, name: str, kubeconfig: Path) -> str:
    """A ServiceAccount ``name`` in ferryman-system bound to cluster-admin (the peers'
    charts grant about that much), and a kubeconfig with its token: the audit policy of
    the local control plane logs that namespace's ServiceAccounts, so the peer's requests
    are counted like ferryman's. Returns the audit user name."""
    ns = rbac.OPERATOR_NAMESPACE
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cluster.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": name, "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": f"race-{name}"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "cluster-admin"},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        ]
    )  # fmt: skip
    token = cluster.kubectl("create", "token", name, "-n", ns, "--duration=24h").stdout.strip()
    rbac.write_kubeconfig(cluster.kubeconfig, kubeconfig, token=token, user=f"{ns}-{name}")
    return f"system:serviceaccount:{ns}:{name}"


def _router_ref(setup: Setup, name: str) -> tuple[str, str]:
    """(plural of the routing object, its name) for ``setup.router``; with plain Services
    the plural of the workloads whose replica counts are the split (bench/race.py's
    ``Replicas``) and the object's name, their names' prefix."""
    if setup.router == "service":
        return "deployments", name
    return ("httproutes" if setup.router == "gatewayapi" else "virtualservices"), name


class Tool:
    """One controller. Subclasses fill in every method; ``name`` is also the key of the
    report."""

    name = ""
    candidate_suffix = ""  # backend-name suffix of the candidate in the route
    user = ""

    def install(self, setup: Setup) -> None:
        raise NotImplementedError

    def argv(self, setup: Setup, kubeconfig: Path) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def objects(self, setup: Setup, name: str, analysis: bool) -> list[dict[str, Any]]:
        raise NotImplementedError

    def route(self, setup: Setup, name: str) -> tuple[str, str]:
        return _router_ref(setup, name)

    def main_kind(self) -> tuple[str, str, str]:
        """(group, version, plural) of the object whose status tells progress."""
        raise NotImplementedError

    def ready(self, obj: dict[str, Any]) -> bool:
        """The object is settled on its first version, nothing in progress."""
        raise NotImplementedError

    def finished(self, obj: dict[str, Any], before: dict[str, Any]) -> bool:
        """The object has fully promoted the candidate; ``before`` is its version just
        before the target write."""
        raise NotImplementedError

    def retarget(self, setup: Setup, name: str) -> None:
        raise NotImplementedError

    def candidate_pod(self, pod: dict[str, Any]) -> bool:
        return ((pod["metadata"].get("labels") or {}).get(RS)) == "v2"

    def pause_key(self, obj: dict[str, Any]) -> str | None:
        """A key naming the step the object waits at for promotion; None if it waits
        for none."""
        raise NotImplementedError

    def promote(self, setup: Setup, name: str) -> None:
        raise NotImplementedError

    def candidate_label(self) -> str:
        """The ``version`` label the data plane gives the candidate's requests."""
        return "canary"

    def workload_side(self, obj: dict[str, Any], name: str) -> str | None:
        """With plain Services: which side of object ``name``'s split workload ``obj``
        (a Deployment or ReplicaSet) is on, as a backend name (``name`` +
        ``candidate_suffix`` for the candidate, ``name-stable`` otherwise); None when it
        is not one of ``name``'s. The peers' workloads carry the pod template's labels."""
        labels = obj["metadata"].get("labels") or {}
        if labels.get("app") != name:
            return None
        return name + (self.candidate_suffix if labels.get(RS) == "v2" else "-stable")

    def side_versions(self, name: str) -> dict[str, str]:
        """Backend name of each side (``workload_side``) -> the ``version`` label the
        data plane gives its requests."""
        return {f"{name}{self.candidate_suffix}": "canary", f"{name}-stable": "stable"}


# --- ferryman --------------------------------------------------------------------------


class Ferryman(Tool):
    name = "ferryman"
    candidate_suffix = "-b"  # backends are named after the ModelVersions: <name>-a, <name>-b

    def install(self, setup: Setup) -> None:
        setup.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=ferryman-crds",
            "-f", str(ROOT / "crds"),
        )  # fmt: skip

    def argv(self, setup: Setup, kubeconfig: Path) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError("ferryman runs through harness.operator.OperatorProcess")

    def objects(self, setup: Setup, name: str, analysis: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        suffix_digit = {"a": "1", "b": "2"}
        for suffix, version in (("a", "1.0.0"), ("b", "1.1.0")):
            out.append({
                "apiVersion": "ferryman.dev/v1alpha1", "kind": "ModelVersion",
                "metadata": {"name": f"{name}-{suffix}"},
                "spec": {"model": name, "version": version,
                         "artifact": {"uri": f"s3://models/{name}/{version}.onnx",
                                      "digest": "sha256:" + "0" * 63 + suffix_digit[suffix]},
                         "serving": {"image": f"{IMAGE}:2.4.1"}},
            })  # fmt: skip
        routers: dict[str, dict[str, Any]] = {
            "gatewayapi": {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}},
            "istio": {"istio": {"hosts": [name]}},
            "service": {"service": {}},
        }
        router = routers[setup.router]
        steps: list[dict[str, Any]] = []
        for w in STEPS:
            steps += [{"setWeight": w}, {"pause": {}}]
        spec: dict[str, Any] = {
            "model": name, "target": {"version": "1.0.0"}, "replicas": setup.replicas,
            "trafficRouting": router, "strategy": {"canary": {"steps": steps}},
            "scaleDownDelaySeconds": 0, "progressDeadlineSeconds": 120,
        }  # fmt: skip
        if analysis:
            spec["analysis"] = {
                "provider": "default", "interval": ANALYSIS_INTERVAL["ferryman"],
                "failureLimit": 0,
                "metrics": [{"name": "error-rate", "max": 0.05,
                             "query": error_rate("{{namespace}}", "{{model}}", "{{version}}")}],
            }  # fmt: skip
        out.append({"apiVersion": "ferryman.dev/v1alpha1", "kind": "Rollout",
                    "metadata": {"name": name}, "spec": spec})  # fmt: skip
        return out

    def main_kind(self) -> tuple[str, str, str]:
        return "ferryman.dev", "v1alpha1", "rollouts"

    def ready(self, obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return st.get("phase") == "Healthy" and st.get("stableVersion") == "1.0.0"

    def finished(self, obj: dict[str, Any], before: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return st.get("phase") == "Healthy" and st.get("stableVersion") == "1.1.0"

    def retarget(self, setup: Setup, name: str) -> None:
        setup.cluster.custom.patch_namespaced_custom_object(
            "ferryman.dev", "v1alpha1", setup.namespace, "rollouts", name,
            {"spec": {"target": {"version": "1.1.0"}}},
        )  # fmt: skip

    def candidate_pod(self, pod: dict[str, Any]) -> bool:
        return (pod["metadata"].get("labels") or {}).get("ferryman.dev/version") == "1.1.0"

    def pause_key(self, obj: dict[str, Any]) -> str | None:
        pause = (obj.get("status") or {}).get("pause") or {}
        return str(pause.get("since")) if pause.get("reason") == "Step" else None

    def promote(self, setup: Setup, name: str) -> None:
        setup.cluster.custom.patch_namespaced_custom_object(
            "ferryman.dev", "v1alpha1", setup.namespace, "rollouts", name,
            {"metadata": {"annotations": {ACTION: "promote", ACTION_ID: str(uuid.uuid4())}}},
        )  # fmt: skip

    def candidate_label(self) -> str:
        return "1.1.0"

    def workload_side(self, obj: dict[str, Any], name: str) -> str | None:
        labels = obj["metadata"].get("labels") or {}
        if labels.get("ferryman.dev/rollout") != name:
            return None
        return name + ("-b" if labels.get("ferryman.dev/version") == "1.1.0" else "-a")

    def side_versions(self, name: str) -> dict[str, str]:
        return {f"{name}-a": "1.0.0", f"{name}-b": "1.1.0"}


# --- the peers' shared pieces ------------------------------------------------------------


def _pod_template(app: str, version: str) -> dict[str, Any]:
    tag = "1.0.0" if version == "v1" else "1.1.0"
    return {
        "metadata": {"labels": {"app": app, RS: version}},
        "spec": {"containers": [{"name": "server", "image": f"{IMAGE}:{tag}",
                                 "ports": [{"containerPort": 8080}]}]},
    }  # fmt: skip


def _service(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app},
                     "ports": [{"port": 80, "targetPort": 8080}]}}  # fmt: skip


def _retarget_patch() -> dict[str, Any]:
    """The peers' target change: the candidate's image and the ``race/version: v2`` pod
    label (a merge patch: the container list is replaced by the one container)."""
    template = _pod_template("", "v2")
    template["metadata"]["labels"] = {RS: "v2"}
    return {"spec": {"template": template}}


# --- Argo Rollouts -------------------------------------------------------------------------


@dataclass
class ArgoRollouts(Tool):
    binary_dir: Path
    name = "argo-rollouts"
    candidate_suffix = "-canary"

    def install(self, setup: Setup) -> None:
        for crd in sorted(self.binary_dir.glob("crds/*-crd.yaml")):
            setup.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))

    def argv(self, setup: Setup, kubeconfig: Path) -> tuple[list[str], dict[str, str]]:
        return [
            str(self.binary_dir / "rollouts-controller"), f"--kubeconfig={kubeconfig}",
            "--leader-elect=false", "--istio-api-version=v1", "--loglevel=info",
            # client-side rate limits raised (defaults QPS 40, burst 80): fastest allowed
            "--qps=1000", "--burst=2000",
            f"--metricsPort={free_port()}", f"--healthzPort={free_port()}",
        ], {"POD_NAMESPACE": rbac.OPERATOR_NAMESPACE}  # fmt: skip

    def objects(self, setup: Setup, name: str, analysis: bool) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        for w in STEPS:
            steps += [{"setWeight": w}, {"pause": {}}]
        if setup.router == "service":
            # No traffic routing: the basic canary, the weight as the ReplicaSets'
            # replica ratio behind one Service.
            canary: dict[str, Any] = {"steps": steps}
            out = [_service(name, name)]
        else:
            canary = {
                "stableService": f"{name}-stable", "canaryService": f"{name}-canary",
                "trafficRouting": {"istio": {"virtualService": {"name": name,
                                                                "routes": ["primary"]}}},
                "steps": steps,
            }  # fmt: skip
            out = [_service(f"{name}-stable", name), _service(f"{name}-canary", name)]
            out.append({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name},
                "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
                    {"destination": {"host": f"{name}-stable"}, "weight": 100},
                    {"destination": {"host": f"{name}-canary"}, "weight": 0}]}]},
            })  # fmt: skip
        if analysis:
            out.append({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": f"{name}-errors"},
                "spec": {"metrics": [{
                    "name": "error-rate", "interval": ANALYSIS_INTERVAL["argo-rollouts"],
                    "failureLimit": 0, "successCondition": "result[0] <= 0.05",
                    "provider": {"prometheus": {"address": setup.prometheus,
                                                "query": error_rate(setup.namespace, name,
                                                                    "canary")}}}]},
            })  # fmt: skip
            canary["analysis"] = {"templates": [{"templateName": f"{name}-errors"}],
                                  "startingStep": 0}  # fmt: skip
        out.append({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
            "spec": {"replicas": setup.replicas, "selector": {"matchLabels": {"app": name}},
                     "template": _pod_template(name, "v1"),
                     "strategy": {"canary": canary}},
        })  # fmt: skip
        return out

    def route(self, setup: Setup, name: str) -> tuple[str, str]:
        if setup.router == "service":
            return "replicasets", name  # the basic canary scales ReplicaSets
        return _router_ref(setup, name)

    def main_kind(self) -> tuple[str, str, str]:
        return "argoproj.io", "v1alpha1", "rollouts"

    def ready(self, obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return st.get("phase") == "Healthy" and st.get("stableRS") == st.get("currentPodHash")

    def finished(self, obj: dict[str, Any], before: dict[str, Any]) -> bool:
        # Healthy again at a generation after the retarget's, observed. (Not "generation
        # >= 2": Argo Rollouts may bump the generation itself after creation.)
        generation = int(obj["metadata"].get("generation", 1))
        observed = str((obj.get("status") or {}).get("observedGeneration"))
        return (
            self.ready(obj)
            and generation > int(before["metadata"].get("generation", 1))
            and observed == str(generation)
        )

    def retarget(self, setup: Setup, name: str) -> None:
        setup.cluster.custom.patch_namespaced_custom_object(
            "argoproj.io", "v1alpha1", setup.namespace, "rollouts", name, _retarget_patch()
        )

    def pause_key(self, obj: dict[str, Any]) -> str | None:
        st = obj.get("status") or {}
        conds = st.get("pauseConditions") or []
        if any(c.get("reason") == "CanaryPauseStep" for c in conds):
            return str(st.get("currentStepIndex"))
        return None

    def promote(self, setup: Setup, name: str) -> None:
        setup.cluster.custom.patch_namespaced_custom_object_status(
            "argoproj.io", "v1alpha1", setup.namespace, "rollouts", name,
            {"status": {"pauseConditions": None}},
        )  # fmt: skip


# --- Flagger ---------------------------------------------------------------------------


@dataclass
class Flagger(Tool):
    binary_dir: Path
    gate: Any  # race.Gate: opened once per promotion
    weights: dict[str, int] = field(default_factory=dict)
    name = "flagger"
    candidate_suffix = "-canary"

    def install(self, setup: Setup) -> None:
        setup.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f",
            str(self.binary_dir / "crd.yaml"),
        )  # fmt: skip

    def argv(self, setup: Setup, kubeconfig: Path) -> tuple[list[str], dict[str, str]]:
        mesh = "gatewayapi:v1" if setup.router == "gatewayapi" else "istio"
        return [
            str(self.binary_dir / "flagger"), f"-kubeconfig={kubeconfig}",
            f"-mesh-provider={mesh}", f"-metrics-server={setup.prometheus}",
            "-enable-leader-election=false", f"-port={free_port()}", "-log-level=info",
            # client-side rate limits raised (defaults QPS 100, burst 250): fastest allowed
            "-kubeconfig-qps=1000", "-kubeconfig-burst=2000",
        ], {}  # fmt: skip

    def objects(self, setup: Setup, name: str, analysis: bool) -> list[dict[str, Any]]:
        service: dict[str, Any] = {"port": 80, "targetPort": 8080}
        if setup.router == "gatewayapi":
            service["gatewayRefs"] = [{"name": "ml-gateway", "namespace": setup.namespace}]
        else:
            service["hosts"] = [name]
        spec: dict[str, Any] = {
            # 1s asked for; Flagger runs it every 10s (its floor), which the race shows.
            "interval": ANALYSIS_INTERVAL["flagger"], "threshold": 1,
            "stepWeights": list(STEPS), "metrics": [], "webhooks": [],
        }  # fmt: skip
        out: list[dict[str, Any]] = [{
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": setup.replicas, "selector": {"matchLabels": {"app": name}},
                     "template": _pod_template(name, "v1")},
        }]  # fmt: skip
        if analysis:
            out.append({
                "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
                "metadata": {"name": f"{name}-errors"},
                "spec": {"provider": {"type": "prometheus", "address": setup.prometheus},
                         "query": error_rate(setup.namespace, name, "canary")},
            })  # fmt: skip
            spec["metrics"] = [{"name": "error-rate", "interval": "3s",
                                "templateRef": {"name": f"{name}-errors"},
                                "thresholdRange": {"max": 0.05}}]  # fmt: skip
        else:
            spec["webhooks"] = [
                {
                    "name": "gate-traffic",
                    "type": "confirm-traffic-increase",
                    "url": setup.gate,
                    "metadata": {"gate": "traffic"},
                },
                {
                    "name": "gate-promotion",
                    "type": "confirm-promotion",
                    "url": setup.gate,
                    "metadata": {"gate": "promotion"},
                },
            ]
        out.append({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "progressDeadlineSeconds": 120, "service": service, "analysis": spec},
        })  # fmt: skip
        return out

    def main_kind(self) -> tuple[str, str, str]:
        return "flagger.app", "v1beta1", "canaries"

    def ready(self, obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("phase") in ("Initialized", "Succeeded")

    def finished(self, obj: dict[str, Any], before: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("phase") == "Succeeded"

    def retarget(self, setup: Setup, name: str) -> None:
        self.gate.open(name, "traffic")  # the first increase (0 -> 20) is not a held step
        setup.cluster.apps.patch_namespaced_deployment(name, setup.namespace, _retarget_patch())

    def pause_key(self, obj: dict[str, Any]) -> str | None:
        # Held at a step: Progressing with weight on the canary (Flagger asks the gate on
        # every tick). The weight is kept for promote().
        st = obj.get("status") or {}
        if st.get("phase") in ("Progressing", "WaitingPromotion") and st.get("canaryWeight"):
            self.weights[obj["metadata"]["name"]] = int(st["canaryWeight"])
            return str(st["canaryWeight"])
        return None

    def promote(self, setup: Setup, name: str) -> None:
        # Below the last step: one traffic increase. At the last step Flagger asks
        # confirm-traffic-increase and then confirm-promotion in the same tick
        # (pkg/controller/scheduler.go), so one promote opens both.
        self.gate.open(name, "traffic")
        if self.weights.get(name, 0) >= STEPS[-1]:
            self.gate.open(name, "promotion")


def start_peer(tool: Tool, setup: Setup, kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start a peer controller as a subprocess (its log in ``log``)."""
    argv, env = tool.argv(setup, kubeconfig)
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**setup.cluster.env, **env},
        )  # fmt: skip
