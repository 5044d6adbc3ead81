"""The route/capacity sampler shared by the e2e tests that inject faults (restart safety,
fault proxy, leader failover): it reads the HTTPRoute and the Deployments of a namespace
through the test's own (direct, fault-free) connection to the API server and records
every moment the route is unsafe.

Moved here from tests/e2e/rollouts.py (which re-exports it) so the harness modules and
every fault test share one sampler; it now also evaluates on every watch event of the
HTTPRoutes and Deployments of the namespace, besides the 100 ms timer.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from kubernetes import watch

from harness.kube import Cluster

ROUTE_API = ("gateway.networking.k8s.io", "v1")


def http_route(
    cluster: Cluster, ns: str, name: str = "fraud", rule: str | None = None
) -> dict[str, int] | None:
    """Backend name -> weight of the first rule of HTTPRoute ``name`` (or of its rule
    named ``rule``: a shared route, issue 15); None if absent."""
    try:
        obj: Any = cluster.custom.get_namespaced_custom_object(*ROUTE_API, ns, "httproutes", name)
    except Exception:
        return None
    return rule_weights(obj, rule)


def rule_weights(obj: Any, rule: str | None = None) -> dict[str, int] | None:
    """Backend name -> weight of ``obj``'s first rule, or of its rule named ``rule``;
    None when there is no such rule."""
    rules = obj["spec"]["rules"]
    found = rules[:1] if rule is None else [r for r in rules if r.get("name") == rule]
    if not found:
        return None
    return {b["name"]: b["weight"] for b in found[0]["backendRefs"]}


def available(cluster: Cluster, ns: str) -> dict[str, tuple[int, int]]:
    """Deployment name -> (spec replicas, available replicas)."""
    deps = cluster.apps.list_namespaced_deployment(ns).items
    return {d.metadata.name: (d.spec.replicas or 0, d.status.available_replicas or 0) for d in deps}  # type: ignore[misc]


class Sampler:
    """Checks the HTTPRoute and the Deployments on every watch event of either and at
    least every 100 ms (bounded by ``limit_s``), and records violations: weights not
    summing to 100, or weight on a backend without enough Ready replicas for it
    (ceil(replicas * weight / 100)). ``evaluations`` counts checks by trigger
    ("event", "timer"); ``stop()`` returns the violations."""

    def __init__(
        self,
        cluster: Cluster,
        ns: str,
        replicas: int,
        limit_s: float = 240,
        route: str = "fraud",
        rule: str | None = None,
    ) -> None:
        self.cluster, self.ns, self.replicas = cluster, ns, replicas
        self.route, self.rule = route, rule  # a shared route's named rule (issue 15)
        self.samples: list[dict[str, int]] = []
        self.violations: list[str] = []
        self.evaluations = {"event": 0, "timer": 0}
        self._stop = threading.Event()
        self._woken = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._threads = [
            threading.Thread(target=self._run, daemon=True),
            threading.Thread(target=self._watch, args=(self._routes,), daemon=True),
            threading.Thread(target=self._watch, args=(self._deployments,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _routes(self, **kw: Any) -> Any:
        return self.cluster.custom.list_namespaced_custom_object(
            *ROUTE_API, self.ns, "httproutes", **kw
        )

    def _deployments(self, **kw: Any) -> Any:
        return self.cluster.apps.list_namespaced_deployment(self.ns, **kw)

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _watch(self, lister: Any) -> None:
        """Wake the checker on every event (short server-side timeouts, so ``stop()``
        ends the thread; any error re-opens the watch)."""
        while self._running():
            try:
                for event in watch.Watch().stream(lister, timeout_seconds=2):
                    obj = event["object"]
                    if event["type"] != "DELETED" and isinstance(obj, dict):
                        self._check_event_route(obj)
                    self._woken.set()
                    if not self._running():
                        return
            except Exception:
                time.sleep(0.1)

    def _check_event_route(self, obj: dict[str, Any]) -> None:
        """The route as the event carries it: its weights must sum to 100."""
        try:
            if (obj.get("metadata") or {}).get("name") != self.route:
                return  # another route (a shared one's, a mesh route), or a Deployment
            route = rule_weights(obj, self.rule)
        except (KeyError, IndexError, TypeError):
            return
        if route is not None and sum(route.values()) != 100:
            self.violations.append(f"weights {route} do not sum to 100 (watch event)")

    def _run(self) -> None:
        while self._running():
            trigger = "event" if self._woken.wait(0.1) else "timer"
            self._woken.clear()
            try:
                route = http_route(self.cluster, self.ns, self.route, self.rule)
                ready = available(self.cluster, self.ns)
                # A consistent sample only: the route must not have moved while the
                # Deployments were read (else a rollback that rewrote the route and then
                # removed the old version in between reads as a violation it never was).
                if http_route(self.cluster, self.ns, self.route, self.rule) != route:
                    self._woken.set()
                    continue
            except Exception:
                time.sleep(0.1)
                continue
            self.evaluations[trigger] += 1
            if route is None:
                continue
            if not self.samples or self.samples[-1] != route:
                self.samples.append(route)
            if sum(route.values()) != 100:
                self.violations.append(f"weights {route} do not sum to 100")
            for backend, weight in route.items():
                need = math.ceil(self.replicas * weight / 100)
                have = ready.get(backend, (0, 0))[1]
                if weight > 0 and have < need:
                    self.violations.append(f"{backend} has weight {weight} with {have} Ready")

    def stop(self) -> list[str]:
        self._stop.set()
        self._woken.set()
        for t in self._threads:
            t.join(timeout=5)
        return self.violations
