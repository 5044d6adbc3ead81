"""Writes that change nothing are left out, and only those (``handlers.applied``): the
executor runs twice over the in-memory fake (``unit.fake_kube``, which records every
write); between the runs the world is left alone, or edited by hand."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from ferryman.handlers import applied, executor
from ferryman.plan import labels
from unit.fake_kube import FakeKube, json_copy
from unit.test_executor import (
    NAME,
    NS,
    ROUTE,
    cluster,
    decide,
    paused_at_ten,
    rollout_of,
    run,
    snapshot,
)


class CountingKube(FakeKube):
    """The fake, counting reads too."""

    gets: int = 0

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.gets += 1
        return await super().get(api_version, kind, namespace, name)


def counting(kube: FakeKube) -> CountingKube:
    out = CountingKube()
    out.objects, out.statuses = kube.objects, kube.statuses
    return out


def indexed(kube: FakeKube) -> dict[tuple[str, str], dict[str, Any]]:
    """What kopf's indexes would hold: the Deployments, Services and budgets."""
    return {
        (kind, name): json_copy(obj)
        for (_v, kind, _ns, name), obj in kube.objects.items()
        if kind in ("Deployment", "Service", "PodDisruptionBudget")
    }


def objects_written(kube: FakeKube) -> list[tuple[str, str, str]]:
    return [w for w in kube.writes if w[0] != "status"]


def twice(edit: Any = None, *, index: bool = False) -> tuple[CountingKube, executor.Executed]:
    """A paused canary's decision executed once, then (after ``edit(kube)``) again on
    what the first run left; returns the fake with only the second run's writes."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = counting(cluster(sim, rollout))
    decision = decide(sim, rollout)
    assert decision.route is not None and decision.deployments is not None
    run(kube, snapshot(sim, rollout, kube), dataclasses.replace(decision))
    if edit is not None:
        edit(kube)
    kube.writes, kube.gets = [], 0
    seen = snapshot(sim, rollout, kube)
    if index:
        seen.observed = indexed(kube)
    done = run(kube, seen, decide(sim, rollout))
    return kube, done


def test_an_unchanged_world_gets_no_write_on_the_second_reconcile() -> None:
    kube, done = twice()
    assert objects_written(kube) == []
    assert done.status.weights is not None and done.status.weights.candidate == 10


def test_objects_in_the_index_are_not_read_again() -> None:
    kube, _ = twice(index=True)
    assert objects_written(kube) == [] and kube.gets == 0


def test_a_route_weight_edited_by_hand_is_written_again() -> None:
    def edit(kube: FakeKube) -> None:
        refs = kube.objects[ROUTE]["spec"]["rules"][0]["backendRefs"]
        refs[0]["weight"], refs[1]["weight"] = 0, 100

    kube, done = twice(edit)
    assert ("apply", "HTTPRoute", NAME) in kube.writes
    refs = kube.objects[ROUTE]["spec"]["rules"][0]["backendRefs"]
    assert [b["weight"] for b in refs] == [90, 10]
    assert done.status.weights is not None and done.status.weights.candidate == 10


def test_a_backend_removed_from_the_route_by_hand_is_written_again() -> None:
    def edit(kube: FakeKube) -> None:
        kube.objects[ROUTE]["spec"]["rules"][0]["backendRefs"].pop()

    kube, _ = twice(edit)
    assert ("apply", "HTTPRoute", NAME) in kube.writes


def test_a_deployment_scaled_by_hand_is_written_again_even_from_the_index() -> None:
    def edit(kube: FakeKube) -> None:
        kube.objects[("apps/v1", "Deployment", NS, "fraud-1.0.0")]["spec"]["replicas"] = 0

    kube, _ = twice(edit, index=True)
    assert objects_written(kube) == [("apply", "Deployment", "fraud-1.0.0")]
    assert kube.deployment_replicas(NS, "fraud-1.0.0") != 0


def test_a_field_ferryman_stopped_setting_is_applied_away() -> None:
    """Every field is still there with its value, but the object asked for is another
    one (it lost a field): the hash annotation differs, so the apply happens."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = FakeKube()
    owner = [labels.owner_reference(rollout)]
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": NS, "ownerReferences": owner},
        "spec": {"selector": {"a": "1"}, "ports": [{"port": 80}], "sessionAffinity": "None"},
    }
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(obj), []))
    del obj["spec"]["sessionAffinity"]
    kube.writes = []
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(obj), []))
    assert kube.writes == [("apply", "Service", "s")]
    kube.writes = []
    asyncio.run(applied.apply_owned(kube, rollout, json_copy(obj), []))
    assert kube.writes == []


def test_carries_compares_values_lists_and_json_types() -> None:
    assert applied.carries({"a": 1, "b": [{"c": 2, "d": 3}], "e": 0}, {"a": 1, "b": [{"c": 2}]})
    assert not applied.carries({"a": 1, "b": [{"c": 2}, {"c": 3}]}, {"b": [{"c": 2}]})
    assert not applied.carries({"a": "1"}, {"a": 1})
    assert not applied.carries({"a": 1}, {"a": True})
    assert not applied.carries({}, {"a": None})
    assert not applied.carries({"a": {"b": 1}}, {"a": {"b": 2}})


def test_carries_compares_resource_quantities_by_value_and_nothing_else() -> None:
    """The API server stores ``cpu: 1`` as "1", 0.5 as "500m", "1000m" as "1"; other
    fields keep their JSON types (a label "1" is no quantity)."""
    res = {"resources": {"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": 0.5}}}
    stored = {
        "resources": {"limits": {"cpu": "1", "memory": "1024Mi"}, "requests": {"cpu": "500m"}}
    }
    assert applied.carries(stored, res)
    assert not applied.carries({"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}, res)
    assert applied.carries({"emptyDir": {"sizeLimit": "1000M"}}, {"emptyDir": {"sizeLimit": "1G"}})
    assert not applied.carries({"labels": {"v": "1"}}, {"labels": {"v": 1}})
    assert not applied.carries({"limits": "1"}, {"limits": 1})  # not a dict of quantities


def test_atomic_fields_are_carried_exactly_but_for_the_api_servers_defaults() -> None:
    """``ATOMIC`` fields (an apply replaces them whole) carry no key added by hand; the
    keys the API server fills in with their schema default (Gateway API v1) still carry,
    else every reconcile would write the route again; other maps keep the subset rule."""
    svc = {"kind": "Service", "metadata": {"labels": {"a": "1"}}, "spec": {"selector": {"a": "1"}}}
    more = json_copy(svc)
    more["metadata"]["labels"]["b"] = "2"  # another manager's label: fine
    assert applied.carries_object(more, svc)
    more["spec"]["selector"]["x"] = "y"
    assert not applied.carries_object(more, svc)
    rule = {"backendRefs": [{"name": "s", "port": 80, "weight": 90}]}
    route = {"kind": "HTTPRoute", "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]}}
    stored = json_copy(route)
    stored["spec"]["parentRefs"][0].update(group="gateway.networking.k8s.io", kind="Gateway")
    stored["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
    stored["spec"]["rules"][0]["backendRefs"][0].update(group="", kind="Service")
    assert applied.carries_object(stored, route)
    stored["spec"]["rules"][0]["backendRefs"][0]["kind"] = "ServiceImport"  # not the default
    assert not applied.carries_object(stored, route)
    stored["spec"]["rules"][0]["backendRefs"][0]["kind"] = "Service"
    stored["spec"]["rules"][0]["timeouts"] = {"request": "1s"}
    assert not applied.carries_object(stored, route)
