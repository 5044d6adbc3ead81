"""Review of review12 (skip unchanged applies, kopf indexes): reproductions of the faults
found (strict xfails until handlers.ledger / handlers.children fixed them by kind: every
write and delete read just before, no skip on an index entry in a reconcile that moves
weight or removes capacity, entries trusted for at most ``MAX_AGE`` seconds, quantities
compared by value)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ferryman.handlers import applied, ledger, observed
from ferryman.plan import labels
from ferryman.plan.route import Route
from unit.fake_kube import FakeKube, json_copy
from unit.machine_sim import _set_ready
from unit.test_applied import indexed
from unit.test_executor import (
    NAME,
    NS,
    ROUTE,
    cluster,
    decide,
    paused_at_ten,
    rollout_of,
    router,
    run,
    snapshot,
)


def test_review12_route_edited_back_before_its_watch_event_is_not_rewritten_before_scale_down() -> (
    None
):
    """Ferryman's abort wrote the route (stable 100%) and the index holds that write (so
    ``current`` trusts it); then someone (kubectl, a GitOps sync) puts the candidate's 10%
    back, and the reconcile runs before that watch event is in. The route is skipped as
    'already carried', and the candidate's Deployment is deleted while the real route
    still sends it 10% of the traffic. Before the change every reconcile applied the
    route before any scale-down (DESIGN §2: the route moves before capacity goes)."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    # What ferryman's own write of the abort route looks like (= what the index holds).
    mine = cluster(sim, rollout)
    run(mine, snapshot(sim, rollout, mine), decide(sim, rollout, "abort"))
    ours = json_copy(mine.objects[ROUTE])
    # The real cluster: the route is back at 90/10 (hand edit not yet in the index).
    kube = cluster(sim, rollout)
    seen = snapshot(sim, rollout, kube)
    seen.route, seen.route_read = ours, False  # rollouts.reconcile: a trusted entry
    seen.observed = indexed(kube)
    decision = decide(sim, rollout, "abort")
    assert "1.1.0" not in decision.deployments
    run(kube, seen, decision)
    real = router(rollout).read(
        kube.objects[ROUTE], {"fraud-1.0.0": "1.0.0", "fraud-1.1.0": "1.1.0"}
    )
    # the candidate's capacity is gone ...
    assert ("delete", "Deployment", "fraud-1.1.0") in kube.writes
    # ... so the route must have been written first, and must not send it traffic
    assert ("apply", "HTTPRoute", NAME) in kube.writes
    assert real == Route(stable="1.0.0")


def _ghost_run(delete: tuple[str, str, str, str], age: float) -> FakeKube:
    """A paused canary run once; the index filled (every entry's last watch event
    ``age`` seconds ago); ``delete`` removed without its DELETED event reaching the index
    (kopf re-lists after a 410 Gone and never discards entries missing from the new
    list); the same decision run again on the trusted entries (``observed.lookup``)."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    run(kube, snapshot(sim, rollout, kube), decide(sim, rollout))
    at = time.monotonic() - age
    indexes: dict[str, Any] = {i.id: {} for i in observed.INDEXES}
    for (_v, kind, ns, name), obj in kube.objects.items():
        index = next(i.id for i in observed.INDEXES if i.kind == kind)
        indexes[index][(ns, name)] = [ledger.Entry(json_copy(obj), at)]
    del kube.objects[delete]
    kube.writes = []
    seen = snapshot(sim, rollout, kube)
    names = ["fraud-1.0.0", "fraud-1.1.0", NAME]
    seen.observed = observed.lookup(indexes, NS, names, None)
    seen.route = seen.observed.get(("HTTPRoute", NAME))
    seen.route_read = seen.route is None
    if seen.route is None:
        seen.route = kube.objects.get(ROUTE)
    run(kube, seen, decide(sim, rollout))
    return kube


def test_review12_deployment_deleted_while_the_watch_relists_is_never_recreated() -> None:
    key = ("apps/v1", "Deployment", NS, "fraud-1.1.0")
    kube = _ghost_run(key, ledger.MAX_AGE + 1)
    assert key in kube.objects, kube.writes  # the candidate (10% of traffic) has no pods


def test_review12_route_deleted_while_the_watch_relists_is_never_recreated() -> None:
    kube = _ghost_run(ROUTE, ledger.MAX_AGE + 1)
    assert ROUTE in kube.objects, kube.writes  # DESIGN §2: a deleted route is written again


def test_a_ghost_is_trusted_for_at_most_max_age_seconds() -> None:
    """The bound, not a fix: a ghost whose last watch event is recent still decides a
    skip (in a reconcile that moves no weight and removes no capacity) until MAX_AGE."""
    key = ("apps/v1", "Deployment", NS, "fraud-1.1.0")
    assert key not in _ghost_run(key, ledger.MAX_AGE / 2).objects
    assert ROUTE not in _ghost_run(ROUTE, ledger.MAX_AGE / 2).objects


class NormalisingKube(FakeKube):
    """The fake, storing resource quantities as the API server does (canonical strings)."""

    async def apply(self, obj: dict[str, Any]) -> Any:
        await super().apply(obj)
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        stored = self.objects[key]
        for c in stored["spec"]["template"]["spec"]["containers"]:
            for part in (c.get("resources") or {}).values():
                for k, v in part.items():
                    part[k] = {1: "1", 0.5: "500m", "1000m": "1"}.get(v, v)
        return json_copy(stored)


def test_review12_a_quantity_the_server_normalises_is_applied_on_every_reconcile() -> None:
    """``resources`` are free-form (ModelVersion.serving.resources); ``cpu: 1`` (YAML int)
    or ``cpu: 0.5`` comes back from the API server as "1" / "500m": ``carries`` compares
    JSON types and values, so the Deployment is applied on every reconcile, for ever."""
    rollout = rollout_of(paused_at_ten())
    kube = NormalisingKube()
    owner = [labels.owner_reference(rollout)]
    container = {"name": "server", "image": "i", "resources": {"limits": {"cpu": 1}}}
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": NS, "ownerReferences": owner},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [container]}}},
    }
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(obj), []))
    kube.writes = []
    index = {("Deployment", "d"): json_copy(kube.objects[("apps/v1", "Deployment", NS, "d")])}
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(obj), [], observed=index))
    assert kube.writes == []


def test_review12_a_route_replaced_by_someone_else_is_force_applied_from_a_lagging_index() -> None:
    """Our route is deleted and someone else creates one of the same name (no ferryman
    label, another owner); before its watch events arrive the index still holds ours,
    which ``current`` trusts (no write of ours since). The abort's route differs from it,
    so it is applied, with force_conflicts=True, over someone else's route: the ownership
    check (DESIGN §2, labels.is_owned_by) ran on the index entry, not on the object. Before
    the change it ran on a GET made just before the apply."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    ours = json_copy(kube.objects[ROUTE])
    foreign = json_copy(ours)
    foreign["metadata"]["labels"] = {}
    foreign["metadata"]["ownerReferences"] = [
        {"apiVersion": "example.com/v1", "kind": "App", "name": "x", "uid": "someone-else"}
    ]
    kube.objects[ROUTE] = foreign
    seen = snapshot(sim, rollout, kube)
    seen.route, seen.foreign_route, seen.blocked = ours, False, None  # from the index
    seen.route_read = False
    seen.observed = indexed(kube)
    run(kube, seen, decide(sim, rollout, "abort"))
    assert kube.objects[ROUTE] == foreign


def test_a_weight_move_onto_a_ghost_deployment_is_held_until_the_index_catches_up() -> None:
    """The candidate's Deployment is gone but its index entries (Deployment index and
    objects) are fresh; a promote would move weight onto it. The reconcile reads the
    Deployment again, finds it missing: it is recreated, the route keeps its weights and
    status is not advanced, and the decision is made again soon (``held``)."""
    sim = paused_at_ten()
    sim.reconcile("promote")  # the candidate scaled up for 50%
    for obj in sim.kube.deployments():
        _set_ready(obj, int(obj["spec"]["replicas"]))
    sim._refresh()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    before = json_copy(kube.objects[ROUTE])
    key = ("apps/v1", "Deployment", NS, "fraud-1.1.0")
    seen = snapshot(sim, rollout, kube)
    seen.observed = indexed(kube)  # the ghost's entry included
    del kube.objects[key]
    decision = decide(sim, rollout)
    assert decision.route is not None and decision.route.candidate_weight == 50
    done = run(kube, seen, decision)
    assert done.held and key in kube.objects
    assert kube.objects[ROUTE] == before
    assert done.status.current_step == rollout.status.current_step
