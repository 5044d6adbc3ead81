"""Helpers for e2e tests of Rollouts: manifests, readers, user actions and a sampler that
watches the route and Deployments every 100 ms for invariant violations."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from typing import Any

from cases.api_cases import model_version
from harness.kube import Cluster

GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}}
ISTIO = {"istio": {"hosts": ["fraud.acme.example"]}}
SERVICE: dict[str, Any] = {"service": {}}


def versions(*specs: tuple[str, str] | str) -> list[dict[str, Any]]:
    """ModelVersions of model "fraud": "1.0.0" or ("1.1.0", image)."""
    out = []
    for item in specs:
        version, image = (item, None) if isinstance(item, str) else item
        mv = model_version(name="fraud-" + version.replace(".", "-"), version=version)
        if image:
            mv["spec"]["serving"]["image"] = image
        out.append(mv)
    return out


def rollout(
    target: dict[str, str] | str,
    *,
    strategy: dict[str, Any] | None = None,
    routing: dict[str, Any] | None = None,
    name: str = "fraud",
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "fraud",
        "target": {"version": target} if isinstance(target, str) else target,
        "replicas": 2,
        "trafficRouting": routing or GATEWAY,
        "strategy": strategy or {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        "scaleDownDelaySeconds": 5,
        "progressDeadlineSeconds": 60,
    }
    spec.update(extra)
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": spec,
    }


def status(cluster: Cluster, ns: str, name: str = "fraud") -> dict[str, Any]:
    return dict(((cluster.get_json("rollout.ferryman.dev", name, ns) or {}).get("status")) or {})


def retarget(cluster: Cluster, ns: str, version: str, name: str = "fraud") -> None:
    """What GitOps does: change spec.target.version of the Rollout."""
    cluster.kubectl(
        "patch",
        "rollout.ferryman.dev",
        name,
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"target": {"version": version}}}),
    )


def act(cluster: Cluster, ns: str, action: str, name: str = "fraud") -> str:
    action_id = str(uuid.uuid4())
    cluster.kubectl(
        "annotate",
        "--overwrite",
        "rollout.ferryman.dev",
        name,
        "-n",
        ns,
        f"ferryman.dev/action={action}",
        f"ferryman.dev/action-id={action_id}",
    )
    return action_id


def http_route(cluster: Cluster, ns: str, name: str = "fraud") -> dict[str, int] | None:
    try:
        obj = cluster.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", ns, "httproutes", name
        )
    except Exception:
        return None
    return {b["name"]: b["weight"] for b in obj["spec"]["rules"][0]["backendRefs"]}


def available(cluster: Cluster, ns: str) -> dict[str, tuple[int, int]]:
    """Deployment name -> (spec replicas, available replicas)."""
    deps = cluster.apps.list_namespaced_deployment(ns).items
    return {d.metadata.name: (d.spec.replicas or 0, d.status.available_replicas or 0) for d in deps}


class Sampler:
    """Reads the HTTPRoute and the Deployments every 100 ms (bounded by ``limit_s``) and
    records violations: weights not summing to 100, or weight on a backend without
    enough Ready replicas for it (ceil(replicas * weight / 100))."""

    def __init__(self, cluster: Cluster, ns: str, replicas: int, limit_s: float = 240) -> None:
        self.cluster, self.ns, self.replicas = cluster, ns, replicas
        self.samples: list[dict[str, int]] = []
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(limit_s,), daemon=True)
        self._thread.start()

    def _run(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                route = http_route(self.cluster, self.ns)
                ready = available(self.cluster, self.ns)
            except Exception:
                time.sleep(0.1)
                continue
            if route is not None:
                if not self.samples or self.samples[-1] != route:
                    self.samples.append(route)
                if sum(route.values()) != 100:
                    self.violations.append(f"weights {route} do not sum to 100")
                for backend, weight in route.items():
                    need = math.ceil(self.replicas * weight / 100)
                    have = ready.get(backend, (0, 0))[1]
                    if weight > 0 and have < need:
                        self.violations.append(f"{backend} has weight {weight} with {have} Ready")
            time.sleep(0.1)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.violations
