"""Helpers for e2e tests of Rollouts: manifests, readers, user actions, a sampler that
watches the route and Deployments every 100 ms for invariant violations, and ``holds``,
which checks that something stays true over a whole window (every change, not one look
at the end)."""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import localcluster

from cases.api_cases import model_version
from ferryman.api.annotations import ACTION, ACTION_ID
from harness.kube import Cluster, wait_for

# Moved to harness.sampler (shared by every fault test); re-exported for the tests here.
from harness.sampler import Sampler as Sampler
from harness.sampler import available as available
from harness.sampler import http_route as http_route

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
        f"{ACTION}={action}",
        f"{ACTION_ID}={action_id}",
    )
    return action_id


def _pod_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False  # terminating pods leave the Service's ready endpoints
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class ServiceCapacitySampler:
    """Watches the namespace's Pods and the live Service (plain-Service routing) and, on
    every watch event and at least every 100 ms (bounded by ``limit_s``), counts the
    Ready pods matching the Service's selector.

    What it asserts (``stop()`` returns the violations): the count is never below
    ``replicas``, except after the test itself made pods unready (``fault(k)`` just
    before doing it): then it must never go below ``replicas - k`` (the operator removes
    no further Ready capacity) and must be back to ``replicas`` within ``restore_s``
    seconds, after which the strict rule applies again. Before the Service exists
    nothing is counted (start the sampler once the stable is Healthy)."""

    def __init__(
        self,
        cluster: Cluster,
        ns: str,
        replicas: int,
        service: str = "fraud",
        limit_s: float = 120,
        restore_s: float = 30,
    ) -> None:
        self.cluster, self.ns, self.replicas, self.service = cluster, ns, replicas, service
        self.restore_s = restore_s
        self.samples: list[tuple[float, int, str]] = []  # (time, Ready behind, why) on change
        self.violations: list[str] = []
        self.evaluations = {"event": 0, "timer": 0}
        self._pods: dict[str, Any] = {}
        self._synced: set[str] = set()
        self._selector: dict[str, str] | None = None
        self._allowed = replicas
        self._fault_at: float | None = None
        self._faulted = False  # the fault has shown (fewer than replicas Ready)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._watches: list[Any] = []
        self._threads = [
            threading.Thread(target=self._watch_pods, daemon=True),
            threading.Thread(target=self._watch_service, daemon=True),
            threading.Thread(target=self._tick, daemon=True),
        ]
        for t in self._threads:
            t.start()
        wait_for(lambda: len(self._synced) == 2, timeout=10, message="sampler's first lists")

    def fault(self, pods: int) -> None:
        """The test is about to make ``pods`` Ready pods behind the Service unready."""
        with self._lock:
            self._allowed = self.replicas - pods
            self._fault_at, self._faulted = time.monotonic(), False

    def behind(self) -> int:
        with self._lock:
            return self._count()

    def _count(self) -> int:
        sel = self._selector
        if not sel:
            return -1
        return sum(
            1
            for pod in self._pods.values()
            if _pod_ready(pod)
            and all((pod.metadata.labels or {}).get(k) == v for k, v in sel.items())
        )

    def _evaluate(self, why: str) -> None:
        with self._lock:
            now = time.monotonic()
            self.evaluations["timer" if why == "timer" else "event"] += 1
            count = self._count()
            if count < 0 or len(self._synced) < 2:
                return
            if not self.samples or self.samples[-1][1] != count:
                self.samples.append((now, count, why))
            if self._fault_at is not None:
                self._faulted = self._faulted or count < self.replicas
                if self._faulted and count >= self.replicas:
                    self._fault_at, self._allowed = None, self.replicas
                elif now - self._fault_at > self.restore_s:
                    self.violations.append(
                        f"capacity {count} not back to {self.replicas} within "
                        f"{self.restore_s}s of the fault"
                    )
                    self._fault_at, self._allowed = None, self.replicas
            if count < self._allowed and len(self.violations) < 100:
                self.violations.append(
                    f"{count} Ready pods behind Service {self.service} (selector "
                    f"{self._selector}), fewer than {self._allowed}, on {why}"
                )

    def _stream(self, func: Any, reset: Any, handle: Any, **kwargs: Any) -> None:
        """List (a consistent snapshot), then watch from its resourceVersion; relist
        after any error or expiry."""
        from kubernetes import watch

        while not self._stop.is_set() and time.monotonic() < self._deadline:
            w = watch.Watch()
            self._watches.append(w)
            try:
                listed = func(self.ns, **kwargs)
                reset(listed.items)
                self._evaluate("list")
                left = max(1, int(self._deadline - time.monotonic()))
                for event in w.stream(
                    func,
                    self.ns,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=min(left, 30),
                    **kwargs,
                ):
                    if self._stop.is_set():
                        break
                    handle(event["type"], event["object"])
            except Exception:
                time.sleep(0.1)

    def _watch_pods(self) -> None:
        def reset(items: list[Any]) -> None:
            with self._lock:
                self._pods = {p.metadata.name: p for p in items}
                self._synced.add("pods")

        def handle(kind: str, pod: Any) -> None:
            with self._lock:
                if kind == "DELETED":
                    self._pods.pop(pod.metadata.name, None)
                else:
                    self._pods[pod.metadata.name] = pod
            self._evaluate(f"pod {kind} {pod.metadata.name}")

        self._stream(self.cluster.core.list_namespaced_pod, reset, handle)

    def _watch_service(self) -> None:
        def selector(svc: Any) -> dict[str, str]:
            return dict(svc.spec.selector or {})

        def reset(items: list[Any]) -> None:
            with self._lock:
                self._selector = selector(items[0]) if items else None
                self._synced.add("service")

        def handle(kind: str, svc: Any) -> None:
            with self._lock:
                self._selector = None if kind == "DELETED" else selector(svc)
            self._evaluate(f"service {kind} selector {self._selector}")

        self._stream(
            self.cluster.core.list_namespaced_service,
            reset,
            handle,
            field_selector=f"metadata.name={self.service}",
        )

    def _tick(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            self._evaluate("timer")
            time.sleep(0.1)

    def stop(self) -> list[str]:
        self._stop.set()
        for w in self._watches:
            w.stop()
        for t in self._threads:
            t.join(timeout=2)
        with self._lock:
            if self._fault_at is not None and self._faulted:
                self.violations.append(f"capacity not back to {self.replicas} after the fault")
            return self.violations


def set_unready(cluster: Cluster, ns: str, version: str, unready: bool = True) -> None:
    """Make every pod of ``version`` unready (or Ready again): the local cluster's
    on-demand annotation, standing in for a failing readiness probe."""
    mark = f"{localcluster.UNREADY_ANNOTATION}{'=true' if unready else '-'}"
    cluster.kubectl("annotate", "pod", "-n", ns, "-l", f"ferryman.dev/version={version}", mark)


# What ``holds`` can watch: custom objects by (group, version, plural), plus "deployments".
WATCHED = {
    "rollout": ("ferryman.dev", "v1alpha1", "rollouts"),
    "modelversion": ("ferryman.dev", "v1alpha1", "modelversions"),
    "httproute": ("gateway.networking.k8s.io", "v1", "httproutes"),
}
Check = Callable[[Any], object]


def route_weights(obj: dict[str, Any] | None) -> dict[str, int] | None:
    """An HTTPRoute object's backend weights (first rule), as ``http_route`` reads them."""
    if obj is None:
        return None
    return {b["name"]: b["weight"] for b in obj["spec"]["rules"][0]["backendRefs"]}


def holds(cluster: Cluster, ns: str, seconds: float, **checks: Check) -> dict[str, int]:
    """Assert that every check stays true for ``seconds``, on every version of the object
    the API server shows in that window: each named object is listed, then watched from
    the list's resourceVersion, so no change is missed (a sleep-then-look is not enough).

    ``checks`` maps a kind of ``WATCHED`` to a predicate on that object's dict (None while
    it does not exist); the object is the one named ``fraud``, or ``kind__name=check``
    (e.g. ``modelversion__fraud_1_0_0``: underscores stand for dashes) names another.
    ``deployments=check`` gets ``{name: spec.replicas}`` of all the namespace's
    Deployments. A predicate fails by returning something falsy or raising
    an exception. Returns how many states each check saw (at least one each); raises
    AssertionError naming the first failing state."""
    deadline = time.monotonic() + seconds
    failures: list[str] = []
    seen: dict[str, int] = {key: 0 for key in checks}
    lock = threading.Lock()

    def judge(key: str, obj: Any) -> None:
        with lock:
            seen[key] += 1
            try:
                ok = checks[key](obj)
            except Exception as e:  # a predicate that cannot read the state fails too
                ok, obj = False, (obj, repr(e))
            if not ok and not failures:
                failures.append(f"{key} did not hold after {seen[key]} states: {obj!r}")

    threads = [
        threading.Thread(target=_watch_one, args=(cluster, ns, key, deadline, judge), daemon=True)
        for key in checks
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 40)
    assert not failures, failures[0]
    assert all(n > 0 for n in seen.values()), f"a check saw no state: {seen}"
    return seen


def record(cluster: Cluster, ns: str, key: str, seconds: float) -> Callable[[], list[Any]]:
    """Start recording every state of object ``key`` (named as in ``holds``) that the API
    server shows in the next ``seconds``, in the background; the returned function waits
    for the window to end and returns the states in order (for a state that may last
    shorter than a poll takes on a busy machine)."""
    states: list[Any] = []
    deadline = time.monotonic() + seconds
    thread = threading.Thread(
        target=_watch_one,
        args=(cluster, ns, key, deadline, lambda _key, obj: states.append(obj)),
        daemon=True,
    )
    thread.start()

    def finish() -> list[Any]:
        thread.join(timeout=seconds + 30)
        assert not thread.is_alive(), f"recording {key} did not end"
        return states

    return finish


def _watch_one(
    cluster: Cluster, ns: str, key: str, deadline: float, judge: Callable[[str, Any], None]
) -> None:
    """List then watch one object (or the Deployments) until ``deadline``, calling
    ``judge`` with each state; relists after a watch ends early or fails."""
    from kubernetes import watch

    kind, _, name = key.partition("__")
    name = name.replace("_", "-") or "fraud"
    if kind == "deployments":
        replicas: dict[str, int] = {}
        listing: Callable[..., Any] = cluster.apps.list_namespaced_deployment
        args: tuple[Any, ...] = (ns,)
        kwargs: dict[str, Any] = {}
    else:
        group, version, plural = WATCHED[kind]
        listing = cluster.custom.list_namespaced_custom_object
        args, kwargs = (group, version, ns, plural), {"field_selector": f"metadata.name={name}"}
    while time.monotonic() < deadline:
        try:
            listed = listing(*args, **kwargs)
            if kind == "deployments":
                replicas = {d.metadata.name: d.spec.replicas for d in listed.items}
                judge(key, dict(replicas))
                rv = listed.metadata.resource_version
            else:
                judge(key, (listed["items"] or [None])[0])
                rv = listed["metadata"]["resourceVersion"]
            left = deadline - time.monotonic()
            if left <= 0:
                return
            w = watch.Watch()
            # The server ends the watch at whole seconds; the client's read timeout ends it
            # at the deadline when nothing happens (then the loop sees the deadline).
            for event in w.stream(
                listing,
                *args,
                resource_version=rv,
                timeout_seconds=math.ceil(left),
                _request_timeout=left,
                **kwargs,
            ):
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {event['object']}")
                obj, gone = event["object"], event["type"] == "DELETED"
                if kind == "deployments":
                    if gone:
                        replicas.pop(obj.metadata.name, None)
                    else:
                        replicas[obj.metadata.name] = obj.spec.replicas
                    judge(key, dict(replicas))
                elif event["type"] != "BOOKMARK":
                    judge(key, None if gone else obj)
                if time.monotonic() >= deadline:
                    w.stop()
                    return
        except Exception as e:  # a watch error or expiry: relist and carry on
            if isinstance(e, AssertionError):
                raise
            time.sleep(0.1)
