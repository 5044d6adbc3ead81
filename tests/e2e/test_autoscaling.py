"""A real HPA resizes a Rollout through its scale subresource and ferryman follows
(issue 14 §3), on the local control plane: kube-controller-manager's own horizontal
controller (every default controller runs; sync period 1 s, hack/cluster/localcluster.py).

There is no metrics API here, so the HPA cannot compute a recommendation; but it clamps
the target into [minReplicas, maxReplicas] before it asks for metrics (``reconcileAutoscaler``
in k8s.io/kubernetes pkg/controller/podautoscaler/horizontal.go: "Current number of
replicas below Spec.MinReplicas" / "above Spec.MaxReplicas"), writing spec.replicas
through the scale subresource. The test moves those bounds, up and down, before and
during a canary paused at a step, and checks that

- the HPA, not ferryman, resized the Rollout (its scale subresource and its events), and
  ferryman sized the Deployments from it: stable = replicas, candidate = its weight's
  share; status.replicas and status.selector as the HPA reads them;
- the canary neither restarted its step nor moved its weight (the route stays 50/50 on
  every state the API server showed), no Deployment flapped (each one's replica count
  only ever moves towards the new target), and the sampler (tests/harness/sampler.py)
  found no weights off 100 and no weight on unready capacity on any watch event;
- the operator's user never wrote rollouts/scale nor owns spec.replicas (audit log,
  managedFields);
- scaled to zero by hand, the HPA stops (ScalingDisabled), every Deployment goes to 0
  and the canary holds at its step (its progress deadline stopped); scaled back up by
  hand, it continues at 50% from the same step and pause;
- the API server's answers to scale writes at 0, the schema's maximum and beyond.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import localcluster
import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from e2e import rollouts as r
from harness import rbac
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess
from harness.sampler import Sampler

pytestmark = [
    pytest.mark.usefixtures("ferryman_crds"),
    pytest.mark.kwok,
    pytest.mark.audit_log,
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "autoscaling"
GROUP, VERSION, PLURAL = "ferryman.dev", "v1alpha1", "rollouts"
STABLE, CANDIDATE = "fraud-1-0-0", "fraud-1-1-0"


HPA_SYNC = "--horizontal-pod-autoscaler-sync-period=1s"


@pytest.fixture
def fast_hpa(local_cluster: Cluster) -> None:
    """The prerequisite: the local control plane's kube-controller-manager syncs HPAs
    every second. A control plane started before that flag was added (`up` reuses a
    running one) is a failure that says what to do, not a slow pass or a skip."""
    pid = localcluster.component_pids(localcluster.Layout())["kube-controller-manager"]
    assert pid is not None, "kube-controller-manager is not running"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if HPA_SYNC.encode() not in cmdline:
        pytest.fail(
            f"kube-controller-manager runs without {HPA_SYNC} (started before it was added "
            "to hack/cluster/localcluster.py): restart the local control plane "
            "(`make down`, then `make up` or `make test`)"
        )


def hpa(minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "fraud"},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Rollout",
                "name": "fraud",
            },
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def scale_of(cluster: Cluster, ns: str) -> dict[str, Any]:
    got: Any = cluster.custom.get_namespaced_custom_object_scale(
        GROUP, VERSION, ns, PLURAL, "fraud"
    )
    return dict(got)


def deployments(cluster: Cluster, ns: str) -> dict[str, tuple[int, int]]:
    """Deployment name -> (spec.replicas, available replicas)."""
    out: dict[str, tuple[int, int]] = {}
    for d in cluster.apps.list_namespaced_deployment(ns).items:
        out[str(d.metadata.name)] = (d.spec.replicas or 0, d.status.available_replicas or 0)
    return out


def settled(cluster: Cluster, ns: str, want: dict[str, int]) -> Callable[[], bool]:
    """Every Deployment of ``want`` asks for and has that many Ready replicas."""

    def check() -> bool:
        have = deployments(cluster, ns)
        return all(have.get(name) == (n, n) for name, n in want.items())

    return check


def resize_by_hpa(
    cluster: Cluster, ns: str, replicas: int, want: dict[str, int], sampler: Sampler
) -> None:
    """Move the HPA's bounds to [replicas, replicas]: the HPA clamps the Rollout to it;
    wait until ferryman has the Deployments at ``want``, all Ready. The sampler checks
    capacity against the smaller of the two sizes meanwhile (the Ready pods that carried
    each weight before the resize still carry it), then against the new size."""
    old = int(scale_of(cluster, ns)["spec"]["replicas"])
    sampler.replicas = min(old, replicas)
    cluster.apply(hpa(replicas, replicas), namespace=ns)
    wait_for(
        lambda: scale_of(cluster, ns)["spec"]["replicas"] == replicas,
        timeout=30,
        message=f"the HPA to scale the Rollout to {replicas}",
    )
    wait_for(settled(cluster, ns, want), timeout=30, message=f"Deployments at {want}")
    wait_for(
        lambda: (
            scale_of(cluster, ns)["status"].get("replicas")
            == sum(n for name, n in want.items() if name in serving(cluster, ns))
        ),
        timeout=30,
        message="status.replicas to count the Ready serving pods",
    )
    sampler.replicas = replicas


def serving(cluster: Cluster, ns: str) -> set[str]:
    weights = r.http_route(cluster, ns) or {}
    return {name for name, weight in weights.items() if weight > 0}


class Recorder:
    """Every spec.replicas the API server shows for the Rollout and each Deployment of
    the namespace (list, then watch from its resourceVersion; re-listed when a watch
    ends), in the background until ``stop()``."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.states: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(lister,), daemon=True)
            for lister in (
                lambda **kw: cluster.custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, **kw
                ),
                lambda **kw: cluster.apps.list_namespaced_deployment(ns, **kw),
            )
        ]
        for t in self._threads:
            t.start()

    def _note(self, obj: Any) -> None:
        if isinstance(obj, dict):
            name, replicas = obj["metadata"]["name"], obj["spec"]["replicas"]
            kind = obj["kind"]
        else:
            name, replicas, kind = obj.metadata.name, obj.spec.replicas, "Deployment"
        self.states.append({f"{kind}/{name}": int(replicas or 0)})

    def _run(self, lister: Callable[..., Any]) -> None:
        while not self._stop.is_set():
            try:
                listed = lister()
                items = listed["items"] if isinstance(listed, dict) else listed.items
                for obj in items:
                    self._note(obj)
                meta = listed["metadata"] if isinstance(listed, dict) else None
                rv = meta["resourceVersion"] if meta else listed.metadata.resource_version
                for event in watch.Watch().stream(lister, resource_version=rv, timeout_seconds=1):
                    if event["type"] != "DELETED":
                        self._note(event["object"])
                    if self._stop.is_set():
                        return
            except Exception:
                time.sleep(0.1)

    def stop(self) -> list[dict[str, int]]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        return self.states


def towards(states: list[dict[str, int]], name: str) -> list[int]:
    """The distinct consecutive spec.replicas values one Deployment went through."""
    out: list[int] = []
    for state in states:
        n = state.get(name)
        if n is not None and (not out or out[-1] != n):
            out.append(n)
    return out


def test_hpa_resizes_a_rollout_and_ferryman_follows_mid_canary(
    fast_hpa: None,
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    operator_identity: rbac.Identity,
) -> None:
    ns = namespace
    since = rbac.now()
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)  # replicas: 2
    wait_for(settled(cluster, ns, {STABLE: 2}), timeout=30, message="1.0.0 at 2 Ready")
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=30)
    wait_for(lambda: r.status(cluster, ns).get("replicas") == 2, timeout=30)
    scale = scale_of(cluster, ns)
    assert scale["status"] == {
        "replicas": 2,
        "selector": "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0)",
    }
    # The selector selects exactly the stable's pods (what the HPA averages over).
    pods = cluster.core.list_namespaced_pod(ns, label_selector=scale["status"]["selector"])
    assert {(p.metadata.labels or {}).get("ferryman.dev/version") for p in pods.items} == {"1.0.0"}

    sampler = Sampler(cluster, ns, replicas=2, limit_s=120)
    recorder = Recorder(cluster, ns)

    # Up, before any canary: the HPA's minReplicas 4 takes the Rollout from 2 to 4.
    resize_by_hpa(cluster, ns, 4, {STABLE: 4}, sampler)

    # A canary paused at 50%: candidate = ceil(4 * 50%) = 2.
    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: (
            r.status(cluster, ns).get("currentStep") == 1
            and r.status(cluster, ns).get("phase") == "Paused"
        ),
        timeout=30,
        message="canary paused at 50%",
    )
    wait_for(settled(cluster, ns, {STABLE: 4, CANDIDATE: 2}), timeout=30)
    paused = r.status(cluster, ns)
    started, pause_since = paused["stepStartedAt"], paused["pause"]["since"]
    assert r.http_route(cluster, ns) == {STABLE: 50, CANDIDATE: 50}
    weights_from = len(sampler.samples) - 1  # the sampler keeps the route's changes only

    # Mid-canary, up then down: stable = replicas, candidate = its weight's share.
    resize_by_hpa(cluster, ns, 6, {STABLE: 6, CANDIDATE: 3}, sampler)
    assert scale_of(cluster, ns)["status"] == {
        "replicas": 9,
        "selector": "ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0,1.1.0)",
    }
    resize_by_hpa(cluster, ns, 2, {STABLE: 2, CANDIDATE: 1}, sampler)
    st = r.status(cluster, ns)
    # Neither the step nor its pause restarted; the weight never moved.
    assert (st["currentStep"], st["phase"], st["stepStartedAt"], st["pause"]["since"]) == (
        1,
        "Paused",
        started,
        pause_since,
    )
    assert sampler.samples[weights_from:] == [{STABLE: 50, CANDIDATE: 50}], sampler.samples
    assert st["weights"] == {"stable": 50, "candidate": 50, "mirrorPercent": 0}
    time.sleep(1.5)  # a few more HPA syncs: nothing moves once the bounds hold
    violations = sampler.stop()
    assert violations == [], violations
    assert sampler.evaluations["event"] > 0, sampler.evaluations

    # No flapping: spec.replicas took exactly the HPA's values; each Deployment's
    # replicas went only towards each new size, one step each.
    states = recorder.stop()
    assert towards(states, "Rollout/fraud") == [2, 4, 6, 2], states
    assert towards(states, f"Deployment/{STABLE}") == [2, 4, 6, 2], states
    assert towards(states, f"Deployment/{CANDIDATE}") == [2, 3, 1], states

    # The HPA did it, through the scale subresource.
    hpa_now = cluster.get_json("hpa", "fraud", ns) or {}
    assert hpa_now["status"]["currentReplicas"] == 2
    reasons = cluster.kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector=involvedObject.kind=HorizontalPodAutoscaler",
        "-o",
        "jsonpath={range .items[*]}{.reason}{' '}{.message}{'\\n'}{end}",
    ).stdout
    assert "SuccessfulRescale" in reasons and "below Spec.MinReplicas" in reasons, reasons
    assert "above Spec.MaxReplicas" in reasons, reasons

    # ferryman never wrote spec.replicas: the field's only owner is the HPA (managedFields
    # name every writer of a field), and the operator's user made no write to
    # rollouts/scale (its patches of the Rollout itself are kopf's metadata: finalizer,
    # annotations; the audit log keeps no bodies at its Metadata level).
    rollout: Any = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "fraud")
    owners = {
        (f.get("manager"), f.get("subresource", ""))
        for f in rollout["metadata"]["managedFields"]
        if "f:replicas" in (f.get("fieldsV1") or {}).get("f:spec", {})
    }
    # The HPA's last scale write took the field over from the user's kubectl apply.
    assert owners == {("kube-controller-manager", "scale")}, owners
    events = list(rbac.read_audit(rbac.audit_log(), user=operator_identity.username, since=since))
    assert events, "no audit event of the operator's user"
    rollout_writes = [
        (e["verb"], (e.get("objectRef") or {}).get("subresource", ""))
        for e in events
        if (e.get("objectRef") or {}).get("resource") == "rollouts"
        and e["verb"] not in ("get", "list", "watch")
    ]
    assert ("update", "scale") not in rollout_writes and ("patch", "scale") not in rollout_writes
    print("operator's Rollout writes:", sorted(set(rollout_writes)))
    assert {sub for _verb, sub in rollout_writes} <= {"status", ""}, rollout_writes
    assert ("patch", "status") in rollout_writes, rollout_writes  # the log holds its writes

    # Scale to zero by hand: the HPA stops scaling a target at 0 (ScalingDisabled; the
    # HPAScaleToZero gate is alpha and off), every Deployment goes to 0, the route keeps
    # its weights (summing to 100) and the canary holds at its step, its pause's clock
    # kept (docs/autoscaling.md, Scale to zero).
    cluster.kubectl("scale", "rollout.ferryman.dev/fraud", "-n", ns, "--replicas=0")
    wait_for(settled(cluster, ns, {STABLE: 0, CANDIDATE: 0}), timeout=30, message="all at 0")

    def disabled() -> bool:
        got = cluster.get_json("hpa", "fraud", ns) or {}
        return any(
            (c["type"], c["status"], c["reason"]) == ("ScalingActive", "False", "ScalingDisabled")
            for c in (got.get("status") or {}).get("conditions") or []
        )

    wait_for(disabled, timeout=30, message="the HPA to stop scaling a target at 0")
    wait_for(
        lambda: "spec.replicas is 0" in (r.status(cluster, ns).get("message") or ""), timeout=30
    )
    st = r.status(cluster, ns)
    assert (st["currentStep"], st["phase"], st["pause"]["since"]) == (1, "Paused", pause_since)
    assert r.http_route(cluster, ns) == {STABLE: 50, CANDIDATE: 50}
    assert scale_of(cluster, ns)["spec"].get("replicas", 0) == 0  # the HPA left it there
    # The progress deadline stops at 0 (docs/autoscaling.md, Scale to zero).
    assert "stepStartedAt" not in st, st

    # Back from zero by hand (the HPA's bounds, [2, 2], hold it there): the canary
    # continues where it stood, at 50% once both versions have Ready pods, its pause's
    # clock kept and the deadline's clock started again at the scale-up.
    cluster.kubectl("scale", "rollout.ferryman.dev/fraud", "-n", ns, "--replicas=2")
    wait_for(settled(cluster, ns, {STABLE: 2, CANDIDATE: 1}), timeout=30, message="back at 2")
    wait_for(lambda: r.http_route(cluster, ns) == {STABLE: 50, CANDIDATE: 50}, timeout=30)
    wait_for(lambda: r.status(cluster, ns).get("capacityReplicas") == 2, timeout=30)
    st = r.status(cluster, ns)
    assert (st["currentStep"], st["phase"], st["pause"]["since"]) == (1, "Paused", pause_since)
    assert st.get("stepStartedAt") not in (None, started), st


def test_scale_writes_at_and_beyond_the_schema_bounds(cluster: Cluster, namespace: str) -> None:
    """What the API server answers a scale read and writes (`kubectl scale`, an
    autoscaler): 0 and the schema's maximum are accepted (no rule reads replicas), beyond
    is refused with the schema's message; examples/autoscaling/hpa.yaml is accepted."""
    ns = namespace
    # Without spec.replicas the API server fills in the default (1): a scale GET would
    # otherwise be an InternalError ("the spec replicas field ... does not exist").
    bare = r.rollout("1.0.0")
    del bare["spec"]["replicas"]
    cluster.apply(bare, namespace=ns)
    assert scale_of(cluster, ns)["spec"]["replicas"] == 1

    def put(replicas: int) -> int:
        body = {"spec": {"replicas": replicas}}
        cluster.custom.patch_namespaced_custom_object_scale(
            GROUP, VERSION, ns, PLURAL, "fraud", body
        )
        return int(scale_of(cluster, ns)["spec"].get("replicas", 0))  # 0 is omitted

    assert put(0) == 0
    assert put(1000) == 1000
    for bad, words in ((1001, "less than or equal to 1000"), (-1, "greater than or equal to 0")):
        with pytest.raises(ApiException) as refused:
            put(bad)
        assert refused.value.status == 422 and words in str(refused.value.body), refused.value
    assert scale_of(cluster, ns)["spec"]["replicas"] == 1000
    out = cluster.kubectl("scale", "rollout.ferryman.dev/fraud", "-n", ns, "--replicas=3")
    assert "scaled" in out.stdout
    assert scale_of(cluster, ns)["spec"]["replicas"] == 3
    example = EXAMPLES / "hpa.yaml"
    applied = cluster.kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(example))
    assert "horizontalpodautoscaler.autoscaling/fraud-detector created (server dry run)" in (
        applied.stdout
    )
