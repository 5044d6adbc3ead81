"""``spec.deletionPolicy`` (``handlers.orphans``): a deleted Rollout's stable version keeps
serving (route 100% to it, its objects orphaned and labelled), and a new Rollout of the
same name adopts exactly those objects, never someone else's. Runs over the in-memory
fake (``unit.fake_kube``), on cluster states the simulator drives to the moment."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import kopf
import pytest

from ferryman.api.rollout import Rollout, RolloutPhase
from ferryman.handlers import executor, ledger, observed, orphans, rollouts, terminating, validity
from ferryman.handlers.context import OperatorContext, install
from ferryman.kube.client import ApplyRejected
from ferryman.plan import labels, serving
from ferryman.routing import router_for
from unit.fake_kube import FakeKube, json_copy
from unit.machine_sim import NAME, NS, UID, Sim, canary_spec, retarget

STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]
STABLE, CANDIDATE = "fraud-1.0.0", "fraud-1.1.0"
KEPT = [
    ("apps/v1", "Deployment", STABLE),
    ("v1", "Service", STABLE),
    ("policy/v1", "PodDisruptionBudget", STABLE),
    ("v1", "Service", NAME),
    ("gateway.networking.k8s.io/v1", "HTTPRoute", NAME),
]


def paused_at_ten(**extra: Any) -> Sim:
    """Stable 1.0.0, candidate 1.1.0 with 10% of the traffic, paused."""
    sim = Sim(canary_spec(STEPS, **extra))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 10)
    return sim


def obj(kube: FakeKube, api_version: str, kind: str, name: str) -> dict[str, Any]:
    return kube.objects[(api_version, kind, NS, name)]


def owners(o: dict[str, Any]) -> set[str]:
    return {r["uid"] for r in o["metadata"].get("ownerReferences") or []}


def keep(sim: Sim) -> list[str]:
    rollout = sim.rollout()
    return asyncio.run(orphans.keep_stable(sim.kube, rollout, router_for(rollout.spec), STABLE))


def kept_objects(sim: Sim) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(v, k, n): obj(sim.kube, v, k, n) for v, k, n in KEPT}


def collect_garbage(kube: FakeKube) -> None:
    """What the garbage collector does once the Rollout is gone: delete what it owned."""
    for key in [k for k, o in kube.objects.items() if UID in owners(o)]:
        del kube.objects[key]


ROUTERS: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (trafficRouting, route apiVersion, route kind)
    "gatewayAPI": (
        {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
    ),
    "istio": (
        {"istio": {"hosts": ["fraud.acme.example"]}},
        "networking.istio.io/v1",
        "VirtualService",
    ),
    "service": ({"service": {}}, "v1", "Service"),
}


def mid_shadow() -> Sim:
    """Stable 1.0.0, 1.1.0 receiving 50% of the traffic mirrored (Istio)."""
    sim = Sim(
        canary_spec(
            STEPS,
            trafficRouting=ROUTERS["istio"][0],
            strategy={"shadow": {"mirrorPercent": 50, "duration": "60s", "then": "promote"}},
        )
    )
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.mirror_percent == 50)
    return sim


@pytest.mark.parametrize("case", [*ROUTERS, "istio-shadow"])
def test_keep_stable_routes_everything_to_stable_first_then_orphans_what_serves_it(
    case: str,
) -> None:
    router = ROUTERS[case.removesuffix("-shadow")]
    sim = mid_shadow() if case.endswith("-shadow") else paused_at_ten(trafficRouting=router[0])
    assert sim.route is not None and sim.route.candidate == "1.1.0"
    kube = sim.kube
    kube.writes.clear()
    kept = keep(sim)
    assert sim.route is not None
    assert (sim.route.stable, sim.route.candidate_weight, sim.route.mirror_percent) == (
        "1.0.0",
        0,
        0,
    )
    assert kube.writes[0] == ("apply", router[2], NAME)  # the route before any orphaning
    expected = [*KEPT[:4], (router[1], router[2], NAME)] if router[2] != "Service" else KEPT[:4]
    assert sorted(kept) == sorted(f"{kind} {name}" for _v, kind, name in expected)
    for api_version, kind, name in expected:
        found = obj(kube, api_version, kind, name)
        assert owners(found) == set(), (kind, name)
        assert found["metadata"]["labels"][orphans.ORPHANED] == "true"
        assert found["metadata"]["labels"][labels.MODEL] == "fraud"
    for kind, api_version in (("Deployment", "apps/v1"), ("Service", "v1")):
        # the candidate's objects stay owned: the garbage collector deletes them
        assert owners(obj(kube, api_version, kind, CANDIDATE)) == {UID}


def test_keep_stable_leaves_a_same_named_object_of_someone_else_alone() -> None:
    sim = paused_at_ten()
    live = obj(sim.kube, "v1", "Service", NAME)
    live["metadata"]["ownerReferences"] = [{"kind": "ConfigMap", "uid": "theirs"}]
    kept = keep(sim)
    assert f"Service {NAME}" not in kept
    assert orphans.ORPHANED not in live["metadata"].get("labels", {})
    assert owners(obj(sim.kube, "v1", "Service", NAME)) == {"theirs"}


def indexes_of(sim: Sim, rollout: Rollout) -> dict[str, Any]:
    """The handler's index kwargs as kopf would hold them for what the fake holds."""
    at = time.monotonic()
    found: dict[str, Any] = {i.id: {} for i in observed.INDEXES}
    deployments: dict[Any, list[Any]] = {}
    for (_v, kind, ns, name), held in sim.kube.objects.items():
        index = next((i.id for i in observed.INDEXES if i.kind == kind), None)
        if index is not None:
            found[index][(ns, name)] = [ledger.Entry(json_copy(held), at)]
        if kind == "Deployment":
            index_fn: Any = rollouts.deployments_by_rollout  # called as kopf calls it
            entry = index_fn(body=held, meta=held["metadata"], namespace=ns)
            for key, value in (entry or {}).items():
                deployments.setdefault(key, []).append(value)
    found["modelversions_by_model"] = {(NS, "fraud"): [sim.model_version(v) for v in sim.versions]}
    found["deployments_by_rollout"] = deployments
    found["rollouts_by_model"] = {}
    return found


def new_rollout(sim: Sim, uid: str = "uid-2") -> dict[str, Any]:
    body = sim.rollout().model_dump(by_alias=True, mode="json", exclude_none=True)
    body["metadata"]["uid"], body["metadata"]["resourceVersion"] = uid, "1"
    body["status"] = {}
    sim.kube.put_status("rollouts", NS, NAME, "1", {})
    for version in sim.versions:
        sim.kube.put_status("modelversions", NS, f"fraud-{version}", "1", {})
    return body


def reconcile(sim: Sim, body: dict[str, Any]) -> tuple[float | None, bool]:
    memo: dict[str, Any] = {}
    install(memo, OperatorContext(kube=cast(Any, sim.kube), http=cast(Any, None)))
    rollout = Rollout.model_validate(body)
    answer = asyncio.run(
        rollouts.reconcile(
            body=cast(Any, body), memo=cast(Any, memo), indexes=indexes_of(sim, rollout)
        )
    )
    held = sim.kube.statuses[("rollouts", NS, NAME)]
    body["metadata"]["resourceVersion"], body["status"] = held["resourceVersion"], held["status"]
    return answer


def test_a_new_rollout_of_the_same_name_adopts_the_orphans_and_starts_from_their_stable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    # The simulator names its ModelVersions fraud-1.0.0, which the CRDs refuse (a dot).
    monkeypatch.setattr(validity, "name_problem", lambda *a: None)
    sim = paused_at_ten()
    keep(sim)
    collect_garbage(sim.kube)
    body = new_rollout(sim)
    sim.kube.writes.clear()
    # First the orphaned stable's version becomes this Rollout's stable version ...
    assert reconcile(sim, body) == (0.0, True)
    assert body["status"]["stableVersion"] == "1.0.0"
    assert [w for w in sim.kube.writes if w[0] != "status"] == []
    # ... then everything is adopted, in a reconcile that decides nothing else.
    assert reconcile(sim, body) == (executor.HELD_RETRY, False)
    for api_version, kind, name in KEPT:
        found = obj(sim.kube, api_version, kind, name)
        assert owners(found) == {"uid-2"}, (kind, name)
        assert orphans.ORPHANED not in found["metadata"]["labels"]
    # The next reconciles canary 1.1.0 from the adopted stable; 1.0.0 is never dropped.
    for _ in range(3):
        reconcile(sim, body)
        assert sim.route is not None and sim.route.stable == "1.0.0"
        assert sim.kube.deployment_replicas(NS, STABLE) == sim.spec.replicas
    assert sim.kube.deployment_replicas(NS, CANDIDATE) is not None


def test_adoption_reads_again_and_takes_nothing_that_is_no_longer_an_orphan() -> None:
    sim = paused_at_ten()
    keep(sim)
    collect_garbage(sim.kube)
    rollout = Rollout.model_validate(new_rollout(sim))
    found = indexes_of(sim, rollout)  # every kept object indexed as an orphan ...
    for _v, kind, name in KEPT:  # ... but each since taken by another Rollout
        held = obj(sim.kube, _v, kind, name)
        held["metadata"]["ownerReferences"] = [
            {"apiVersion": "ferryman.dev/v1alpha1", "kind": "Rollout", "uid": "uid-9"}
        ]
    sim.kube.writes.clear()
    candidates = orphans.candidates(found, rollout, [STABLE, NAME])
    assert len(candidates) == len(KEPT)
    adopted = asyncio.run(orphans.adopt(sim.kube, rollout, candidates))
    assert adopted == {}
    assert sim.kube.writes == []


def orphan_deployment(rollout: Rollout) -> dict[str, Any]:
    mv = Sim(canary_spec(STEPS)).model_version("1.0.0")
    deployment = serving.deployment(mv, rollout, replicas=1)
    patch = orphans.orphan_metadata(deployment, rollout)
    deployment["metadata"]["labels"].update(patch["labels"])
    deployment["metadata"]["ownerReferences"] = patch["ownerReferences"]
    return deployment


def _unset(d: dict[str, Any], key: str) -> None:
    d["metadata"]["labels"].pop(key)


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("not labelled orphaned", lambda d: _unset(d, orphans.ORPHANED)),
        ("not ferryman's", lambda d: _unset(d, labels.MANAGED_BY)),
        ("another Rollout's name", lambda d: d["metadata"]["labels"].update({labels.ROLLOUT: "x"})),
        ("another model", lambda d: d["metadata"]["labels"].update({labels.MODEL: "other"})),
        ("no model label", lambda d: _unset(d, labels.MODEL)),
        (
            "still owned by a Rollout",
            lambda d: d["metadata"].update(
                ownerReferences=[
                    {"apiVersion": "ferryman.dev/v1alpha1", "kind": "Rollout", "uid": "u"}
                ]
            ),
        ),
        ("another namespace", lambda d: d["metadata"].update(namespace="elsewhere")),
    ],
)
def test_only_ferrymans_orphans_of_this_rollout_and_model_are_adoptable(
    why: str, change: Any
) -> None:
    rollout = Sim(canary_spec(STEPS)).rollout()
    deployment = orphan_deployment(rollout)
    assert orphans.adoptable(deployment, rollout)
    change(deployment)
    assert not orphans.adoptable(deployment, rollout), why


def test_the_objects_named_after_the_rollout_are_adoptable_across_a_model_change() -> None:
    """A forced replace that changes spec.model keeps the route (named after the Rollout)
    serving the old model until the new model's first version is Ready; its version
    objects are the old model's and are not adopted."""
    sim = Sim(canary_spec(STEPS))
    rollout = sim.rollout()
    route = orphan_deployment(rollout)
    route["metadata"]["name"] = NAME
    other = Sim(canary_spec(STEPS, model="churn")).rollout()
    assert orphans.adoptable(route, other)
    assert not orphans.adoptable(orphan_deployment(rollout), other)


def run_deleted(sim: Sim, policy: str, retry: int = 0) -> None:
    memo: dict[str, Any] = {}
    install(memo, OperatorContext(kube=cast(Any, sim.kube), http=cast(Any, None)))
    body = sim.rollout().model_dump(by_alias=True, mode="json", exclude_none=True)
    body["spec"]["deletionPolicy"] = policy
    found = indexes_of(sim, Rollout.model_validate(body))
    found["modelversions_by_model"] = {}
    handler: Any = rollouts.rollout_deleted  # called as kopf calls it
    asyncio.run(handler(body=body, memo=memo, retry=retry, **found))


def test_a_refused_route_write_orphans_nothing_is_retried_then_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The route still splits 90/10: orphaning it would keep sending 10% to a candidate
    the garbage collector deletes. Nothing is orphaned; the finalizer retries, and on its
    last attempt posts KeepStableFailed and lets the deletion go on."""
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda _b, **k: events.append((k["type"], k["reason"])))
    sim = paused_at_ten()
    real_apply = sim.kube.apply

    async def refuse_route(o: dict[str, Any]) -> dict[str, Any]:
        if o["kind"] == "HTTPRoute":
            raise ApplyRejected("HTTPRoute", NAME, 422, "admission webhook denied the request")
        return await real_apply(o)

    monkeypatch.setattr(sim.kube, "apply", refuse_route)
    sim.kube.writes.clear()
    for retry in range(rollouts.KEEP_ATTEMPTS - 1):
        with pytest.raises(kopf.TemporaryError, match=r"not moved 100% to 1\.0\.0"):
            run_deleted(sim, "KeepStable", retry=retry)
    assert events == []
    run_deleted(sim, "KeepStable", retry=rollouts.KEEP_ATTEMPTS - 1)
    assert events == [("Warning", "KeepStableFailed")]
    assert not [w for w in sim.kube.writes if w[0] == "patch"]  # nothing orphaned
    assert all(UID in owners(o) for (_v, _k, name), o in kept_objects(sim).items())


@pytest.mark.parametrize("policy", ["KeepStable", "Delete"])
def test_the_finalizer_keeps_the_stable_only_with_keep_stable(policy: str) -> None:
    sim = paused_at_ten()
    sim.kube.writes.clear()
    run_deleted(sim, policy)
    patched = sorted(name for op, _kind, name in sim.kube.writes if op == "patch")
    if policy == "Delete":
        assert sim.kube.writes == []
    else:
        assert patched == sorted(name for *_, name in KEPT)


def test_the_default_policy_is_keep_stable() -> None:
    assert Sim(canary_spec(STEPS)).rollout().spec.deletion_policy == "KeepStable"


def test_the_stable_is_seeded_from_a_fresh_read_when_the_index_lacks_its_deployment() -> None:
    """An index that lags (the orphaned Deployment not in it yet, its Services already)
    still makes the orphaned stable the new Rollout's: its Deployment is read."""
    sim = paused_at_ten()
    keep(sim)
    collect_garbage(sim.kube)
    rollout = Rollout.model_validate(new_rollout(sim))
    found = indexes_of(sim, rollout)
    found[next(i.id for i in observed.INDEXES if i.kind == "Deployment")] = {}
    candidates = orphans.candidates(found, rollout, [STABLE, NAME])
    assert ("Deployment", STABLE) not in candidates and candidates
    served = {v: f"fraud-{v}" for v in sim.versions}
    seeded = asyncio.run(orphans.seed_status(sim.kube, rollout, candidates, served))
    assert seeded is not None and seeded["stableVersion"] == "1.0.0"
    owned = Rollout.model_validate(new_rollout(sim, uid="uid-3"))
    owned.status.stable_version = "1.0.0"
    assert asyncio.run(orphans.seed_status(sim.kube, owned, candidates, served)) is None


def test_a_stale_orphan_entry_costs_one_read_not_one_per_reconcile() -> None:
    """An index entry of an orphan that is gone (an index ghost): read once, then left
    out while the Ledger says it was read gone after the entry's watch event."""
    sim = paused_at_ten()
    keep(sim)
    collect_garbage(sim.kube)
    rollout = Rollout.model_validate(new_rollout(sim))
    found = indexes_of(sim, rollout)
    del sim.kube.objects[("v1", "Service", NS, NAME)]  # gone; its entry stays
    book: ledger.Ledger = ledger.Ledger()
    first = orphans.candidates(found, rollout, [NAME], book)
    assert ("Service", NAME) in first
    asyncio.run(orphans.adopt(sim.kube, rollout, [("Service", NAME)], book))
    assert ("Service", NAME) not in orphans.candidates(found, rollout, [NAME], book)
    assert ("HTTPRoute", NAME) in orphans.candidates(found, rollout, [NAME], book)


def test_a_rollout_in_a_terminating_namespace_does_not_reconcile_unless_created_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every object the namespace controller deletes wakes the Rollout; none of its
    re-creates would be accepted: after the first refusal it writes nothing. A Rollout
    created after that refusal is in a new namespace of that name and reconciles."""
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    monkeypatch.setattr(terminating, "_TERMINATING", {})
    sim = paused_at_ten()
    for version in sim.versions:
        sim.kube.put_status("modelversions", NS, f"fraud-{version}", "1", {})
    body = sim.rollout().model_dump(by_alias=True, mode="json", exclude_none=True)
    body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    terminating.noted(
        f"unable to create new content in namespace {NS} because it is being terminated", NS, 403
    )
    sim.kube.writes.clear()
    delay, wrote = reconcile(sim, body)
    assert not wrote and delay is not None and delay > terminating.MEMORY - 5  # woken then
    assert sim.kube.writes == []
    body["metadata"]["creationTimestamp"] = "2999-01-01T00:00:00Z"
    reconcile(sim, body)
    assert sim.kube.writes != []
