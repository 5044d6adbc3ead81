"""review6: reproductions of faults found in the merged "reading from kopf indexes" work
(strict xfails: each passes once the fault is fixed, and the xfail must then go)."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.kube.client import ApplyRejected
from unit.fake_kube import json_copy
from unit.machine_sim import _set_ready
from unit.test_applied import indexed
from unit.test_executor import NS, ROUTE, cluster, decide, paused_at_ten, rollout_of, run, snapshot

CANDIDATE = ("apps/v1", "Deployment", NS, "fraud-1.1.0")


def _promoted_candidate_ready() -> Any:
    """A paused canary promoted once (the candidate scaled up for 50%), all pods Ready,
    as the Deployment index reports them."""
    sim = paused_at_ten()
    sim.reconcile("promote")
    for obj in sim.kube.deployments():
        _set_ready(obj, int(obj["spec"]["replicas"]))
    sim._refresh()
    return sim


def test_review6_weight_is_not_moved_onto_a_candidate_the_fresh_read_finds_unready() -> None:
    """The Deployment index (``deployments_by_rollout``) says the candidate has all its
    replicas available; its pods failed their readiness probe a moment ago and that
    watch event is not handled yet. The decision moves 10% -> 50% onto it. The executor
    reads the candidate's Deployment fresh just before the route write (the transition
    rule, handlers/children.py), and that read shows 0 available replicas, but only its
    absence holds the decision: the route gets 50% for a version with no Ready pod
    (DESIGN.md §2: never weight on unready capacity)."""
    sim = _promoted_candidate_ready()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    seen = snapshot(sim, rollout, kube)  # the index: candidate fully available
    seen.observed = indexed(kube)
    for key, obj in kube.objects.items():
        if key == CANDIDATE:
            _set_ready(obj, 0)  # the cluster as it is: no Ready pod
    before = json_copy(kube.objects[ROUTE])
    decision = decide(sim, rollout)
    assert decision.route is not None and decision.route.candidate_weight == 50
    done = run(kube, seen, decision)
    assert kube.objects[ROUTE] == before, "50% written onto 0 Ready pods"
    assert done.held


@pytest.mark.parametrize("refused", ["Deployment", "Service"])
def test_review6_a_refused_recreate_of_a_ghost_still_holds_the_weight_move(refused: str) -> None:
    """As test_a_weight_move_onto_a_ghost_deployment_is_held_until_the_index_catches_up
    (the candidate's Deployment deleted, its DELETED event not yet in the index), but the
    recreate is refused (a quota, an admission webhook: ``refused`` is the object the API
    server refuses). The executor writes the route anyway ("the decision gives weight only
    to replicas it observed Ready", executor.py) and 50% of the traffic goes to a version
    that has no Deployment at all."""
    sim = _promoted_candidate_ready()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    before = json_copy(kube.objects[ROUTE])
    seen = snapshot(sim, rollout, kube)
    seen.observed = indexed(kube)  # the ghost's entry included
    del kube.objects[CANDIDATE]
    if refused == "Service":
        del kube.objects[("v1", "Service", NS, "fraud-1.1.0")]  # deleted with it
    kube.refuse[(refused, "fraud-1.1.0")] = ApplyRejected(
        refused, "fraud-1.1.0", 403, "exceeded quota"
    )
    decision = decide(sim, rollout)
    assert decision.route is not None and decision.route.candidate_weight == 50
    run(kube, seen, decision)
    assert CANDIDATE not in kube.objects
    assert kube.objects[ROUTE] == before, "50% written onto a Deployment that does not exist"


def test_review6_a_selector_key_added_by_hand_is_removed() -> None:
    """The version's Service ``fraud-1.0.0`` gets ``x: y`` added to its selector by hand:
    it now selects no pod (a selector is an AND of its keys), so every request routed to
    1.0.0 fails. The edit's watch event wakes the Rollout; its index entry (or the GET)
    shows the selector with one key more, ``carries`` says the desired selector is
    carried, and the Service is left as it is, for ever (seen on the local control plane:
    not restored within 90 s; a server-side apply of the Service, as before the skip,
    replaces the atomic selector and removes the key). The same holds for the
    PodDisruptionBudget's ``selector.matchLabels`` (an atomic LabelSelector) and, with
    plain Services, for the live Service itself: 100% of the traffic goes nowhere."""
    import asyncio

    from ferryman.handlers import applied
    from ferryman.plan import serving
    from unit.test_executor import mv_of

    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    svc = serving.service(mv_of("1.0.0"), rollout)
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(svc), []))  # ours, stamped
    key = ("v1", "Service", NS, "fraud-1.0.0")
    kube.objects[key]["spec"]["selector"]["x"] = "y"  # the hand edit
    kube.writes = []
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(svc), [], observed=indexed(kube)))
    assert "x" not in kube.objects[key]["spec"]["selector"], kube.writes


def test_review6_a_filter_added_by_hand_to_the_route_rule_is_removed() -> None:
    """Someone adds ``filters: [RequestMirror to a Service "tap"]`` to the route's only
    rule: every request is copied to it (a URLRewrite would send the versions other
    requests). The watch event wakes the
    Rollout; the entry carries every field ferryman sets, so nothing is written (a
    server-side apply, as before the skip, replaces the atomic ``spec.rules`` and
    removes the filter: HTTPRoute's CRD marks rules, backendRefs, filters and matches
    ``x-kubernetes-list-type: atomic``; seen with a URLRewrite filter on the local
    control plane). Istio's VirtualService ``spec.http`` has no
    list type (atomic by default): a hand-added ``fault`` or ``redirect`` stays too."""
    import asyncio

    from ferryman.handlers import applied
    from ferryman.plan import labels
    from unit.test_executor import route_object

    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    assert sim.route is not None
    desired = route_object(rollout, sim.route, labels.owner_reference(rollout))
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(desired), []))  # ours, stamped
    rule = kube.objects[ROUTE]["spec"]["rules"][0]
    rule["filters"] = [  # every request also copied to someone else's Service
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "tap", "port": 80}}}
    ]
    kube.writes = []
    found = {("HTTPRoute", ROUTE[3]): json_copy(kube.objects[ROUTE])}
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(desired), [], observed=found))
    assert "filters" not in kube.objects[ROUTE]["spec"]["rules"][0], kube.writes


@pytest.mark.xfail(
    strict=True,
    reason="review6 F4 (fix6: by design, the kind fixed otherwise): a Healthy Rollout's "
    "reconcile returns no delay, so MAX_AGE alone never re-reads its entries; a timed "
    "re-read would add idle API requests (issue 12: none). A ghost left by a re-list is "
    "detected instead (observed.relisted, ledger.trusted 3; "
    "test_an_index_ghost_left_out_of_a_relist_is_read_again), as docs/api-requests.md says",
)
def test_review6_a_healthy_rollout_reads_its_index_entries_again_within_max_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real handler (``rollouts.reconcile``) on a Healthy Rollout whose objects all
    sit in the indexes (fresh entries): the next reconcile must be due within
    ``ledger.MAX_AGE`` seconds, or a ghost entry (its object deleted during a re-list, no
    DELETED event) is never read again and the object never recreated: a Gateway with no
    HTTPRoute serves nothing while status says Healthy. Before the indexes the same
    deletion was missed too, but nothing claimed a bound."""
    import asyncio
    import time
    from typing import cast

    import kopf

    from ferryman.api.rollout import RolloutPhase
    from ferryman.handlers import ledger, observed, rollouts
    from ferryman.handlers.context import OperatorContext, install
    from unit.machine_sim import NAME, Sim, canary_spec

    sim = Sim(canary_spec([{"setWeight": 50}]))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.tick(30)
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    at = time.monotonic()
    indexes: dict[str, Any] = {i.id: {} for i in observed.INDEXES}
    for (_v, kind, ns, name), obj in sim.kube.objects.items():
        found = [i.id for i in observed.INDEXES if i.kind == kind]
        if found:
            indexes[found[0]][(ns, name)] = [ledger.Entry(json_copy(obj), at)]
    indexes["modelversions_by_model"] = {
        (NS, "fraud"): [sim.model_version(v) for v in sim.versions]
    }
    indexes["deployments_by_rollout"] = {(NS, NAME): sim._index()}
    indexes["rollouts_by_model"] = {}
    memo: dict[str, Any] = {}
    install(memo, OperatorContext(kube=cast(Any, sim.kube), http=cast(Any, None)))
    body = sim.rollout().model_dump(by_alias=True, mode="json", exclude_none=True)
    delays = []
    for _ in range(2):  # the second: nothing left to write
        delay, _wrote = asyncio.run(
            rollouts.reconcile(body=cast(Any, body), memo=cast(Any, memo), indexes=indexes)
        )
        held = sim.kube.statuses[("rollouts", NS, NAME)]
        body["metadata"]["resourceVersion"], body["status"] = (
            held["resourceVersion"],
            held["status"],
        )
        delays.append(delay)
    assert sim.status.phase == RolloutPhase.HEALTHY
    assert delays[-1] is not None and delays[-1] <= ledger.MAX_AGE, delays


def test_review6_a_plain_service_abort_keeps_ready_pods_when_the_fresh_read_finds_the_stable_unready() -> (  # noqa: E501
    None
):
    """A plain-Service canary at 50% (2 + 2 of 4) is aborted: the stable is scaled back to
    4; its pods are Ready in the Deployment index, which is what the decision to drop the
    candidate is made from. A moment later the stable's pods fail their readiness probe
    (the watch event is not handled yet). The executor reads every served Deployment
    fresh (the reconcile removes capacity) and sees 0 available on the stable, yet
    writes the Service (stable only) and deletes the candidate: Ready pods behind the
    live Service go from 2 to 0 (DESIGN.md §2: never below ``replicas``)."""
    import asyncio
    from datetime import timedelta

    from ferryman.api.rollout import RolloutPhase
    from ferryman.handlers import children, executor
    from ferryman.plan import machine
    from unit.machine_sim import Sim, canary_spec, retarget

    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]
    sim = Sim(canary_spec(steps, replicas=4, trafficRouting={"service": {}}))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    sim.tick(2)
    sim.reconcile("abort")  # the stable scaled back up to 4
    sim.now += timedelta(seconds=1)
    for obj in sim.kube.deployments():
        _set_ready(obj, int(obj["spec"]["replicas"]))  # ... and Ready, as indexed
    sim._refresh()
    sim._own_route()
    rollout = sim.rollout()
    seen = sim.observed()
    decision = machine.decide(rollout.spec, rollout.status, seen)
    snapshot_ = sim._snapshot(rollout, seen.blocked)
    assert children.removes_capacity(snapshot_, decision)
    for obj in sim.kube.deployments():
        if obj["metadata"]["name"] == "fraud-1.0.0":
            _set_ready(obj, 0)  # the cluster as it is now
    before = sim.behind()
    assert before == 2  # the candidate's Ready pods
    asyncio.run(executor.execute(sim.kube, snapshot_, decision))
    assert sim.behind() >= before, "no Ready pod left behind the live Service"


def test_review6_every_indexed_resource_wakes_its_rollout() -> None:
    """Seen on the local control plane: ``kubectl delete pdb fraud-1-0-0`` on a Healthy
    Rollout; the Service and Deployment deleted the same way come back within 0.2 s, the
    budget not within 60 s (a node drain may then evict every stable pod at once)."""
    import kopf

    from ferryman.handlers import (
        observed,
        rollouts,  # noqa: F401 - registers the handlers
    )
    from unit.test_observed import resource

    handlers = kopf.get_default_registry()._watching.get_all_handlers()
    for one in observed.INDEXES:
        w = one.watch
        res = resource(w.group, w.plural, one.kind, w.version)
        woken = [h for h in handlers if h.selector is not None and h.selector.check(res)]
        assert woken, f"nothing wakes a Rollout when its {one.kind} changes"


def test_review6_argocd_refuses_to_start_outside_a_private_network_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Run in the host's network namespace (interfaces besides loopback), as the unit
    layer is; the
    harness should refuse before starting any process (docs/gitops.md: it must run in a
    private network namespace), not rely on the caller having used hack/gitops-tests.sh."""
    import shutil
    from pathlib import Path
    from types import SimpleNamespace
    from typing import cast

    from harness import argocd_loop

    started: list[list[str]] = []
    monkeypatch.setattr(argocd_loop, "binary", lambda: Path("/nonexistent/argocd"))
    monkeypatch.setattr(argocd_loop.ArgoCD, "install", lambda self: None)
    monkeypatch.setattr(argocd_loop.ArgoCD, "_wait", lambda self, proc, port, timeout=60: None)
    monkeypatch.setattr(argocd_loop.ArgoCD, "_login", lambda self: True)
    monkeypatch.setattr(argocd_loop, "wait_port", lambda *a, **k: None)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)

    def start(self: Any) -> Any:
        started.append(self.argv)
        return self

    monkeypatch.setattr(argocd_loop.Process, "start", start)

    cluster = SimpleNamespace(env={"PATH": "/usr/bin"})  # the unit layer has no cluster
    acd = argocd_loop.ArgoCD(cast(Any, cluster), tmp_path)
    with pytest.raises(Exception, match="network namespace"):
        acd.start()
    assert started == [], started


def test_an_index_ghost_left_out_of_a_relist_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fix6, for F4's kind: the HTTPRoute is deleted while kopf re-lists after "410 Gone"
    (no DELETED event: its entry stays); the list's other objects come with ``type`` None
    (``observed.relisted``) and wake the Rollout. Its reconcile must not trust the
    route's entry (older than the list's start): it reads the route, as a DELETED event
    would have made it do; the other entries, refreshed by the list, are not read."""
    import asyncio
    import time
    from typing import cast

    import kopf

    from ferryman.api.rollout import RolloutPhase
    from ferryman.handlers import ledger, observed, rollouts
    from ferryman.handlers.context import OperatorContext, install
    from unit.machine_sim import NAME, Sim, canary_spec

    sim = Sim(canary_spec([{"setWeight": 50}]))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.tick(30)
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    monkeypatch.setattr(observed, "LISTED", {})
    monkeypatch.setattr(observed, "_LAST_LISTED", {})
    before = time.monotonic() - 30  # the route's last watch event
    relist = before + 20
    indexes: dict[str, Any] = {i.id: {} for i in observed.INDEXES}
    for (_v, kind, ns, name), obj in sim.kube.objects.items():
        found = [i.id for i in observed.INDEXES if i.kind == kind]
        if found:
            at = before if kind == "HTTPRoute" else relist + 0.5  # the rest re-listed
            indexes[found[0]][(ns, name)] = [ledger.Entry(json_copy(obj), at)]
            observed.relisted(found[0], relist + 1)
    assert any(k[1] == "HTTPRoute" for k in sim.kube.objects)
    del sim.kube.objects[ROUTE]  # ... during the re-list: a ghost
    indexes["modelversions_by_model"] = {
        (NS, "fraud"): [sim.model_version(v) for v in sim.versions]
    }
    indexes["deployments_by_rollout"] = {(NS, NAME): sim._index()}
    indexes["rollouts_by_model"] = {}
    memo: dict[str, Any] = {}
    install(memo, OperatorContext(kube=cast(Any, sim.kube), http=cast(Any, None)))
    body = sim.rollout().model_dump(by_alias=True, mode="json", exclude_none=True)
    reads: list[tuple[str, str]] = []
    get = sim.kube.get

    async def counted(api_version: str, kind: str, namespace: str, name: str) -> Any:
        reads.append((kind, name))
        return await get(api_version, kind, namespace, name)

    monkeypatch.setattr(sim.kube, "get", counted)
    asyncio.run(rollouts.reconcile(body=cast(Any, body), memo=cast(Any, memo), indexes=indexes))
    # The ghost is read (and found gone), as after a DELETED event; the re-listed
    # entries decide without a read.
    assert ("HTTPRoute", NAME) in reads, reads
    assert [r for r in reads if r[0] != "HTTPRoute"] == [], reads


def test_relisted_starts_a_list_after_a_quiet_gap_only() -> None:
    from ferryman.handlers import observed

    saved = dict(observed.LISTED), dict(observed._LAST_LISTED)
    try:
        observed.relisted("x", 100.0)
        observed.relisted("x", 103.0)  # the same list
        assert observed.LISTED["x"] == 100.0 - observed.LIST_SLACK
        observed.relisted("x", 103.0 + observed.LIST_GAP + 1)  # a new one
        assert observed.LISTED["x"] == 103.0 + observed.LIST_GAP + 1 - observed.LIST_SLACK
    finally:
        observed.LISTED.clear()
        observed.LISTED.update(saved[0])
        observed._LAST_LISTED.clear()
        observed._LAST_LISTED.update(saved[1])


@pytest.mark.parametrize("fails", ["read", "write"])
def test_a_failed_fresh_read_holds_the_weight_move_and_a_failed_write_does_not(
    fails: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fix6, F2's kind: when the fresh read of the candidate's Deployment itself fails (a
    timeout), what the decision counted on is unverified: the route is not written and
    the decision is held. A failed write after a read that found it Ready does not hold
    the route (the decision gives weight only to pods it observed Ready)."""
    sim = _promoted_candidate_ready()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    before = json_copy(kube.objects[ROUTE])
    seen = snapshot(sim, rollout, kube)
    seen.observed = indexed(kube)
    get, apply = kube.get, kube.apply

    async def failing_get(api_version: str, kind: str, ns: str, name: str) -> Any:
        if fails == "read" and (kind, name) == ("Deployment", "fraud-1.1.0"):
            raise TimeoutError("read timed out")
        return await get(api_version, kind, ns, name)

    async def failing_apply(obj: dict[str, Any]) -> Any:
        if fails == "write" and obj["kind"] == "Deployment":
            raise TimeoutError("write timed out")
        return await apply(obj)

    monkeypatch.setattr(kube, "get", failing_get)
    monkeypatch.setattr(kube, "apply", failing_apply)
    decision = decide(sim, rollout)
    assert decision.route is not None and decision.route.candidate_weight == 50
    done = run(kube, seen, decision)
    assert done.failures
    if fails == "read":
        assert done.held and kube.objects[ROUTE] == before
    else:
        assert not done.held and kube.objects[ROUTE] != before
