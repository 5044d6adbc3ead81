"""The executor writes a decision in the order that keeps DESIGN.md §2's invariants: it
runs over an in-memory fake of its write Protocol that records each write and raises on
anything unexpected (``unit.fake_kube``). Decisions come from the real state machine,
driven to the moment by the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

import pytest

from cases.api_cases import model_version
from ferryman import metrics
from ferryman.api.common import ConditionStatus
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout, RolloutPhase
from ferryman.handlers import executor
from ferryman.handlers.context import OperatorContext, install
from ferryman.kube.client import ApplyRejected, Conflict, Rejected
from ferryman.plan import labels, machine, serving
from ferryman.plan.decision import Action, DeploymentState
from ferryman.plan.route import Route
from ferryman.routing.gatewayapi import GatewayAPIRouter
from unit.fake_kube import FakeKube, Unexpected
from unit.machine_sim import Sim, _set_ready, canary_spec, retarget

NS, NAME, UID = "ml", "fraud", "uid-1"
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute", NS, NAME)


def paused_at_ten() -> Sim:
    """Stable 1.0.0, candidate 1.1.0 with 10% of the traffic, paused."""
    sim = Sim(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 10)
    assert sim.status.phase == RolloutPhase.PAUSED
    return sim


def rollout_of(sim: Sim, rv: str = "7") -> Rollout:
    return Rollout.model_validate(
        {
            "apiVersion": "ferryman.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {
                "name": NAME,
                "namespace": NS,
                "uid": UID,
                "resourceVersion": rv,
                "generation": 1,
            },
            "spec": sim.spec.model_dump(by_alias=True, mode="json", exclude_none=True),
            "status": sim.status.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
    )


def mv_of(version: str) -> ModelVersion:
    mv = ModelVersion.model_validate(model_version(name=f"fraud-{version}", version=version))
    mv.metadata.namespace = NS
    return mv


def router(rollout: Rollout) -> GatewayAPIRouter:
    assert rollout.spec.traffic_routing.gateway_api is not None
    return GatewayAPIRouter(rollout.spec.traffic_routing.gateway_api)


def route_object(rollout: Rollout, route: Route, owner: dict[str, Any]) -> dict[str, Any]:
    versions = {route.stable, route.candidate} - {None}
    return router(rollout).build(
        name=NAME,
        namespace=NS,
        route=route,
        services={v: f"fraud-{v}" for v in versions if v},
        port=serving.service_port(rollout),
        metadata={"labels": {labels.MANAGED_BY: "ferryman"}, "ownerReferences": [owner]},
    )


def cluster(sim: Sim, rollout: Rollout, *, route_owner: dict[str, Any] | None = None) -> FakeKube:
    """The fake holding what ``sim`` has applied: each version's Service, budget and
    Deployment (Ready as ``sim`` says), the route (ours, unless ``route_owner`` says
    whose) and the Rollout."""
    kube = FakeKube()
    for version, replicas in sim.replicas.items():
        mv = mv_of(version)
        kube.put(serving.service(mv, rollout))
        kube.put(serving.pod_disruption_budget(mv, rollout))
        deployment = serving.deployment(mv, rollout, replicas=replicas)
        _set_ready(deployment, sim.available.get(version, 0))  # as the snapshot's index says
        kube.put(deployment)
    assert sim.route is not None
    kube.put(route_object(rollout, sim.route, route_owner or labels.owner_reference(rollout)))
    written = rollout.status.model_dump(by_alias=True, mode="json")
    kube.put_status("rollouts", NS, NAME, rollout.metadata.resource_version, written)
    return kube


def snapshot(sim: Sim, rollout: Rollout, kube: FakeKube) -> executor.Snapshot:
    existing = kube.objects.get(ROUTE)
    foreign = existing is not None and not labels.is_owned_by(existing, rollout)
    return executor.Snapshot(
        rollout=rollout,
        router=router(rollout),
        route=existing,
        foreign_route=foreign,
        blocked=f"HTTPRoute {NAME} exists and is not owned by this Rollout" if foreign else None,
        by_version={v: mv_of(v) for v in sim.versions},
        deployments={
            v: DeploymentState(r, sim.available.get(v, 0)) for v, r in sim.replicas.items()
        },
        deployment_names={v: f"fraud-{v}" for v in sim.replicas},
        written=rollout.status.model_dump(by_alias=True, mode="json"),
        now=sim.now,
    )


def decide(sim: Sim, rollout: Rollout, action: str | None = None, **observed: Any) -> Any:
    seen = sim.observed(Action(action, "id-1") if action else None)
    return machine.decide(rollout.spec, rollout.status, dataclasses.replace(seen, **observed))


def run(kube: FakeKube, seen: executor.Snapshot, decision: Any) -> executor.Executed:
    return asyncio.run(executor.execute(kube, seen, decision))


def condition(status: Any, type_: str) -> Any:
    return next((c for c in status.conditions or [] if c.type == type_), None)


def test_a_rollback_writes_the_route_then_scales_down_then_status() -> None:
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    decision = decide(sim, rollout, "abort")
    assert decision.route == Route(stable="1.0.0")
    assert "1.1.0" not in decision.deployments  # the candidate goes
    done = run(kube, snapshot(sim, rollout, kube), decision)
    writes = kube.writes
    route = writes.index(("apply", "HTTPRoute", NAME))
    gone = writes.index(("delete", "Deployment", "fraud-1.1.0"))
    status = writes.index(("status", "rollouts", NAME))
    assert route < gone < status, writes
    # Nothing of the candidate's capacity goes before the route stops sending it traffic.
    assert all(w[2] != "fraud-1.1.0" for w in writes[:route]), writes
    assert writes[-1] == ("status", "rollouts", NAME)
    assert router(rollout).read(kube.objects[ROUTE], {"fraud-1.0.0": "1.0.0"}) == Route(
        stable="1.0.0"
    )
    assert done.wrote and done.refused is None and done.route_written_at is not None
    held = kube.statuses[("rollouts", NS, NAME)]["status"]
    assert held["candidateVersion"] is None and held["weights"]["stable"] == 100
    assert [e.reason for e in done.events] == ["Aborted"]


def test_a_foreign_route_gets_no_write_and_an_ownership_conflict() -> None:
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    someone = {"apiVersion": "v1", "kind": "ConfigMap", "name": "theirs", "uid": "uid-9"}
    kube = cluster(sim, rollout, route_owner=someone)
    before = kube.objects[ROUTE]
    seen = snapshot(sim, rollout, kube)
    assert seen.foreign_route
    # Even a promotion (which would move the route and scale the stable down) stops.
    done = run(kube, seen, decide(sim, rollout, "promote", blocked=seen.blocked))
    assert kube.writes == [("status", "rollouts", NAME)]  # no object written or deleted
    assert kube.objects[ROUTE] == before
    cond = condition(done.status, executor.OWNERSHIP)
    assert cond is not None and cond.status == ConditionStatus.TRUE
    assert cond.reason == "ForeignObject" and f"HTTPRoute {NAME}" in cond.message
    assert done.status.weights is None  # no route of ours carries traffic
    assert [(e.type, e.reason) for e in done.events][-1] == ("Warning", executor.OWNERSHIP)


def test_a_route_found_foreign_after_deciding_is_not_written_nor_capacity_taken() -> None:
    """The executor's own check: a rollback decided on a route of ours that is someone
    else's by the time it is written leaves the route alone, keeps the candidate's
    capacity and keeps the status it was decided from."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    decision = decide(sim, rollout, "abort")
    assert decision.route is not None
    someone = {"apiVersion": "v1", "kind": "ConfigMap", "name": "theirs", "uid": "uid-9"}
    kube = cluster(sim, rollout, route_owner=someone)
    before = kube.objects[ROUTE]
    done = run(kube, snapshot(sim, rollout, kube), decision)
    assert kube.objects[ROUTE] == before
    assert not any(w[1] == "HTTPRoute" or w[0] == "delete" for w in kube.writes), kube.writes
    assert kube.deployment_replicas(NS, "fraud-1.1.0") == sim.replicas["1.1.0"]
    assert kube.writes[-1] == ("status", "rollouts", NAME)
    held = kube.statuses[("rollouts", NS, NAME)]["status"]
    assert held["candidateVersion"] == "1.1.0"  # the rollback did not happen
    cond = condition(done.status, executor.OWNERSHIP)
    assert cond is not None and cond.status == ConditionStatus.TRUE
    assert [e.reason for e in done.events] == [executor.OWNERSHIP]  # no "Aborted"


def test_the_fake_refuses_a_write_over_a_foreign_route() -> None:
    """The fake itself: a write the executor must never make raises."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    someone = {"apiVersion": "v1", "kind": "ConfigMap", "name": "theirs", "uid": "uid-9"}
    kube = cluster(sim, rollout, route_owner=someone)
    assert sim.route is not None
    obj = route_object(rollout, sim.route, labels.owner_reference(rollout))
    with pytest.raises(Unexpected):
        asyncio.run(kube.apply(obj))
    with pytest.raises(Unexpected):
        asyncio.run(kube.get("v1", "ConfigMap", NS, "x"))


def test_a_status_conflict_is_not_written_over_and_is_retried_from_a_fresh_read() -> None:
    sim = paused_at_ten()
    stale = rollout_of(sim, rv="7")
    kube = cluster(sim, stale)
    kube.statuses[("rollouts", NS, NAME)]["resourceVersion"] = "8"  # changed since read
    with pytest.raises(Conflict):
        run(kube, snapshot(sim, stale, kube), decide(sim, stale, "abort"))
    # Only the route and the scale-down went out; no status (nor its fallback) landed.
    assert not any(w[0] == "status" for w in kube.writes)
    # The daemon decides again on the Rollout as it is now: that write lands.
    kube.writes.clear()
    fresh = rollout_of(sim, rv=kube.statuses[("rollouts", NS, NAME)]["resourceVersion"])
    done = run(kube, snapshot(sim, fresh, kube), decide(sim, fresh, "abort"))
    assert done.wrote and kube.writes[-1] == ("status", "rollouts", NAME)
    assert kube.statuses[("rollouts", NS, NAME)]["resourceVersion"] == "9"


def test_a_refused_scale_up_still_writes_the_route_and_holds_the_scale_down() -> None:
    sim = paused_at_ten()
    # A leftover Deployment of an old version, which the decision would delete.
    sim.put_version("0.9.0", replicas=1, ready=1)
    sim.versions.append("0.9.0")
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    decision = decide(sim, rollout, "promote")  # past the pause: 50% needs 2 candidates
    assert decision.deployments["1.1.0"] == 2 and "0.9.0" not in decision.deployments
    assert decision.route is not None
    kube.refuse[("Deployment", "fraud-1.1.0")] = ApplyRejected(
        "Deployment", "fraud-1.1.0", 403, "forbidden by policy"
    )
    done = run(kube, snapshot(sim, rollout, kube), decision)
    assert ("apply", "HTTPRoute", NAME) in kube.writes
    assert not any(w[0] == "delete" for w in kube.writes), kube.writes  # held back
    assert kube.deployment_replicas(NS, "fraud-0.9.0") == 1
    cond = condition(done.status, executor.APPLY_FAILED)
    assert cond is not None and cond.status == ConditionStatus.TRUE
    assert "refused Deployment fraud-1.1.0 (HTTP 403)" in cond.message
    assert done.failures and done.wrote
    assert ("Warning", executor.APPLY_FAILED) in [(e.type, e.reason) for e in done.events]


def test_a_refused_status_write_falls_back_to_the_essential_status() -> None:
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    kube.status_errors.append(Rejected(f"status of rollouts/{NS}/{NAME}", 422, "too large"))
    done = run(kube, snapshot(sim, rollout, kube), decide(sim, rollout, "abort"))
    assert done.refused is not None and not done.wrote
    assert kube.writes[-1] == ("status", "rollouts", NAME)  # the fallback landed
    held = kube.statuses[("rollouts", NS, NAME)]["status"]
    assert held["candidateVersion"] is None and held["phase"] == done.status.phase
    failed = next(c for c in held["conditions"] if c["type"] == executor.STATUS_WRITE)
    assert failed["status"] == "True" and "too large" in failed["message"]
    assert done.events[0].reason == executor.STATUS_WRITE


def test_the_daemon_decides_again_at_once_on_a_status_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 409 on the status write is retried from a fresh read: the daemon waits for kopf
    to hand it the Rollout as it is now and reconciles again without a backoff."""
    from ferryman.handlers import rollouts

    class Stopped:
        flag = False

        def __bool__(self) -> bool:
            return self.flag

    class Body:
        def __init__(self) -> None:
            self.metadata = {"resourceVersion": "7"}

    stopped, body = Stopped(), Body()
    read: list[str] = []
    timeouts: list[float | None] = []

    async def reconcile(*, body: Any, memo: Any, indexes: Any) -> tuple[float | None, bool]:
        read.append(body.metadata["resourceVersion"])
        if len(read) == 1:
            body.metadata["resourceVersion"] = "8"  # kopf's fresh read of the Rollout
            raise Conflict("rollouts/ml/fraud changed; decide again")
        stopped.flag = True
        return 0.0, False

    real_wait_for = asyncio.wait_for

    async def wait_for(awaitable: Any, **kwargs: Any) -> Any:
        timeouts.append(kwargs["timeout"])
        return await real_wait_for(awaitable, **kwargs)

    monkeypatch.setattr(rollouts, "reconcile", reconcile)
    monkeypatch.setattr(asyncio, "wait_for", wait_for)
    daemon: Any = rollouts.rollout_daemon  # the function kopf registered
    memo: dict[str, Any] = {}
    install(memo, OperatorContext(kube=cast(Any, None), http=cast(Any, None)))
    asyncio.run(daemon(name=NAME, namespace=NS, body=body, memo=memo, stopped=stopped))
    assert read == ["7", "8"]
    assert timeouts[0] == 0.0  # no backoff after a conflict


def test_metrics_count_a_rollback_once_by_its_structured_cause() -> None:
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    written = rollout.status.model_dump(by_alias=True, mode="json")
    done = run(kube, snapshot(sim, rollout, kube), decide(sim, rollout, "abort"))
    metrics.forget(NS, NAME)

    def sample(name: str, **labels: str) -> float:
        where = {"namespace": NS, "rollout": NAME, **labels}
        return metrics.REGISTRY.get_sample_value(name, where) or 0.0

    for _ in range(2):  # the second reconcile reads the entry back: not counted again
        at = done.route_written_at
        metrics.record_reconcile(rollout, done.status, written, at, measured=False)
        written = done.status.model_dump(by_alias=True, mode="json")
        assert sample("ferryman_rollbacks_total", reason="abort") == 1.0
        assert sample("ferryman_rollouts_ended_total", outcome="Aborted") == 1.0
        assert sample("ferryman_rollout_weight", role="stable") == 100.0
    metrics.forget(NS, NAME)


def test_no_request_goes_to_a_version_whose_service_turned_out_to_be_someone_elses() -> None:
    """The index had not shown it yet (field: a foreign Service under the stable's name,
    CI under load): the write of the version's objects finds the Service is someone
    else's, so the route that would send it requests is not written either."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    theirs = serving.service(mv_of("1.1.0"), rollout)
    theirs["metadata"] = {"name": theirs["metadata"]["name"], "namespace": NS}
    theirs["spec"]["selector"] = {"app": "someone-else"}
    kube.put(theirs)
    before = kube.objects[ROUTE]
    decision = decide(sim, rollout, "promote")  # scales the candidate up, weight kept
    assert decision.route is not None and decision.route.candidate_weight > 0
    assert decision.deployments is not None and "1.1.0" in decision.deployments
    done = run(kube, snapshot(sim, rollout, kube), decision)
    assert ("apply", "HTTPRoute", NAME) not in kube.writes, kube.writes
    assert kube.objects[ROUTE] == before
    cond = condition(done.status, executor.OWNERSHIP)
    assert cond is not None and cond.status == ConditionStatus.TRUE
    assert "fraud-1.1.0" in cond.message
