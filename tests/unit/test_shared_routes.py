"""Named rules in a route someone else owns (issue 15 §1): the pure parts (rule selection,
patch building, the restore decision) and the executor's read-modify-write over the
in-memory fake (``unit.fake_kube``): only the named rules' backends and ferryman's mirror
change, a concurrent edit is retried from a fresh read (bounded), a removed rule blocks
with the ``SharedRoute`` condition, and KeepStable leaves the rules 100% on stable."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any, cast

import jq  # type: ignore[import-not-found]  # a C extension, no stubs
import pytest
import yaml

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import GatewayAPIRouting, IstioRouting, Rollout
from ferryman.handlers import executor, orphans, shared_routes
from ferryman.plan.route import Route
from ferryman.routing import router_for, shared_of
from ferryman.routing.gatewayapi import GatewayAPIRouter
from ferryman.routing.istio import IstioRouter
from ferryman.routing.shared import SharedRouteProblem, find_rules
from unit.fake_kube import FakeKube, apply_op
from unit.test_executor import (
    NS,
    ROUTE,
    cluster,
    condition,
    decide,
    paused_at_ten,
    rollout_of,
    snapshot,
)

Obj = dict[str, Any]
GW = ("gateway.networking.k8s.io/v1", "HTTPRoute", NS, "public")
SERVICES = {"1.0.0": "fraud-1.0.0", "1.1.0": "fraud-1.1.0"}
VERSIONS = {n: v for v, n in SERVICES.items()}
HEADER = {
    "type": "RequestHeaderModifier",
    "requestHeaderModifier": {"set": [{"name": "x-team", "value": "risk"}]},
}
AUDIT = {
    "type": "RequestMirror",
    "requestMirror": {"backendRef": {"name": "audit", "port": 80}, "percent": 5},
}


def ref(name: str, weight: int) -> Obj:
    # As the API server returns it: group and kind defaulted.
    return {"group": "", "kind": "Service", "name": name, "port": 80, "weight": weight}


def httproute() -> Obj:
    """The platform team's route: three path rules, one of them not ferryman's."""
    path = {"path": {"type": "PathPrefix", "value": "/v1/predict"}}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "public", "namespace": NS, "resourceVersion": "10"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["ml.acme.example"],
            "rules": [
                {"name": "docs", "matches": [{"path": {"type": "PathPrefix", "value": "/docs"}}],
                 "backendRefs": [ref("docs", 1)]},
                {"name": "predict", "matches": [path], "filters": [HEADER, AUDIT],
                 "timeouts": {"request": "10s"},
                 "backendRefs": [ref("fraud-1.0.0", 90), ref("fraud-1.1.0", 10)]},
                {"name": "explain", "timeouts": {"request": "30s"},
                 "backendRefs": [ref("fraud-1.0.0", 90), ref("fraud-1.1.0", 10)]},
            ],
        },
    }  # fmt: skip


def gateway(rules: tuple[str, ...] = ("predict", "explain")) -> GatewayAPIRouter:
    config = GatewayAPIRouting.model_validate({"httpRoute": {"name": "public", "rules": rules}})
    return GatewayAPIRouter(config)


def patched(obj: Obj, ops: list[Obj]) -> Obj:
    out = copy.deepcopy(obj)
    for op in ops:
        apply_op(out, op)
    return out


def unmanaged(obj: Obj, names: tuple[str, ...] = ("predict", "explain")) -> Obj:
    """``obj`` without what ferryman manages: the named rules' backends and its mirror."""
    out = copy.deepcopy(obj)
    for rule in out["spec"]["rules"]:
        if rule.get("name") in names:
            rule.pop("backendRefs", None)
            kept = [
                f
                for f in rule.get("filters") or []
                if f.get("type") != "RequestMirror"
                or f["requestMirror"]["backendRef"]["name"] not in VERSIONS
            ]
            rule.pop("filters", None)
            if kept:
                rule["filters"] = kept
    return out


def test_rules_are_found_by_name_wherever_the_owners_put_them() -> None:
    route = httproute()
    assert find_rules(route, "rules", ["predict", "explain"]) == {"predict": 1, "explain": 2}
    route["spec"]["rules"].reverse()  # the owners reorder their rules
    assert find_rules(route, "rules", ["predict", "explain"]) == {"predict": 1, "explain": 0}
    ops = gateway().patch(route, Route(stable="1.0.0"), SERVICES, 80)
    assert {op["path"] for op in ops} == {"/spec/rules/1/backendRefs", "/spec/rules/0/backendRefs"}


def test_a_missing_or_repeated_rule_is_named() -> None:
    route = httproute()
    with pytest.raises(SharedRouteProblem) as missing:
        find_rules(route, "rules", ["predict", "score", "rank"])
    assert missing.value.reason == "RuleMissing"
    assert "score, rank" in str(missing.value) and "HTTPRoute public" in str(missing.value)
    route["spec"]["rules"].append({"name": "predict", "backendRefs": []})
    with pytest.raises(SharedRouteProblem) as twice:
        find_rules(route, "rules", ["predict"])
    assert twice.value.reason == "RuleAmbiguous"


def test_the_patch_changes_only_the_named_rules_backends() -> None:
    route = httproute()
    ops = gateway().patch(
        route, Route(stable="1.0.0", candidate="1.1.0", candidate_weight=50), SERVICES, 80
    )
    assert [op["path"] for op in ops] == ["/spec/rules/1/backendRefs", "/spec/rules/2/backendRefs"]
    after = patched(route, ops)
    assert unmanaged(after) == unmanaged(route)  # every other field as it was
    assert after["spec"]["rules"][0] == route["spec"]["rules"][0]  # "docs" untouched
    weights = [(b["name"], b["weight"]) for b in after["spec"]["rules"][1]["backendRefs"]]
    assert weights == [("fraud-1.0.0", 50), ("fraud-1.1.0", 50)]
    assert after["spec"]["rules"][1]["filters"] == [HEADER, AUDIT]  # the owners' filters


def test_a_rule_that_carries_the_route_needs_no_patch_and_a_hand_edit_is_restored() -> None:
    route = httproute()
    at_ten = Route(stable="1.0.0", candidate="1.1.0", candidate_weight=10)
    # The API server's defaults (group, kind) are not a difference: no write.
    assert gateway().patch(route, at_ten, SERVICES, 80) == []
    edited = copy.deepcopy(route)
    edited["spec"]["rules"][2]["backendRefs"][1]["weight"] = 90  # by hand
    ops = gateway().patch(edited, at_ten, SERVICES, 80)
    assert [op["path"] for op in ops] == ["/spec/rules/2/backendRefs"]
    assert gateway().patch(patched(edited, ops), at_ten, SERVICES, 80) == []
    assert gateway().read(patched(edited, ops), VERSIONS) == at_ten


def test_ferrymans_mirror_is_its_own_filter_among_the_owners() -> None:
    route = httproute()
    shadow = Route(stable="1.0.0", candidate="1.1.0", mirror_percent=20)
    after = patched(route, gateway(("predict",)).patch(route, shadow, SERVICES, 80))
    filters = after["spec"]["rules"][1]["filters"]
    assert filters[:2] == [HEADER, AUDIT] and len(filters) == 3
    assert filters[2]["requestMirror"] == {
        "backendRef": {"name": "fraud-1.1.0", "port": 80},
        "percent": 20,
    }
    assert gateway(("predict",)).read(after, VERSIONS) == shadow  # the owners' mirror is not read
    done = patched(after, gateway(("predict",)).patch(after, Route(stable="1.0.0"), SERVICES, 80))
    assert done["spec"]["rules"][1]["filters"] == [HEADER, AUDIT]  # only ours went


def virtualservice() -> Obj:
    def dest(host: str, weight: int) -> Obj:
        return {"destination": {"host": host, "port": {"number": 80}}, "weight": weight}

    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "public", "namespace": NS, "resourceVersion": "3"},
        "spec": {
            "hosts": ["ml.acme.example"],
            "http": [
                {"name": "docs", "route": [dest("docs", 100)]},
                {"name": "primary", "timeout": "10s", "retries": {"attempts": 2},
                 "match": [{"uri": {"prefix": "/v1/predict"}}],
                 "route": [dest("fraud-1.0.0", 100)]},
                {"name": "audited", "mirror": {"host": "audit"},
                 "route": [dest("fraud-1.0.0", 100)]},
            ],
        },
    }  # fmt: skip


def istio(*routes: str) -> IstioRouter:
    config = IstioRouting.model_validate({"virtualService": {"name": "public", "routes": routes}})
    return IstioRouter(config)


def test_a_virtualservice_route_gets_weights_and_mirror_and_nothing_else() -> None:
    vs = virtualservice()
    canary = Route(stable="1.0.0", candidate="1.1.0", candidate_weight=30, mirror_percent=10)
    after = patched(vs, istio("primary").patch(vs, canary, SERVICES, 80))
    primary = after["spec"]["http"][1]
    assert [(r["destination"]["host"], r["weight"]) for r in primary["route"]] == [
        ("fraud-1.0.0", 70),
        ("fraud-1.1.0", 30),
    ]
    assert primary["mirror"]["host"] == "fraud-1.1.0" and primary["mirrorPercentage"] == {
        "value": 10.0
    }
    assert istio("primary").read(after, VERSIONS) == canary
    for key in ("name", "timeout", "retries", "match"):
        assert primary[key] == vs["spec"]["http"][1][key]
    assert after["spec"]["http"][0] == vs["spec"]["http"][0]
    assert istio("primary").patch(after, canary, SERVICES, 80) == []
    back = patched(after, istio("primary").patch(after, Route(stable="1.0.0"), SERVICES, 80))
    assert (
        "mirror" not in back["spec"]["http"][1]
        and "mirrorPercentage" not in back["spec"]["http"][1]
    )


def test_a_virtualservice_route_that_mirrors_elsewhere_is_not_taken_over() -> None:
    vs = virtualservice()
    # Weights only: the owners' mirror stays.
    after = patched(vs, istio("audited").patch(vs, Route(stable="1.0.0"), SERVICES, 80))
    assert after["spec"]["http"][2]["mirror"] == {"host": "audit"}
    with pytest.raises(SharedRouteProblem) as taken:
        istio("audited").patch(vs, Route("1.0.0", "1.1.0", 0, mirror_percent=50), SERVICES, 80)
    assert taken.value.reason == "MirrorTaken" and "audit" in str(taken.value)


# --- the executor over the fake ------------------------------------------------------


def shared_rollout(rv: str = "7") -> tuple[Any, Rollout]:
    sim = paused_at_ten()
    rollout = rollout_of(sim, rv)
    rollout.spec.traffic_routing.gateway_api = GatewayAPIRouting.model_validate(
        {"httpRoute": {"name": "public", "rules": ["predict", "explain"]}}
    )
    return sim, rollout


def shared_cluster(sim: Any, rollout: Rollout, kube: FakeKube | None = None) -> FakeKube:
    """``unit.test_executor.cluster`` (the versions' objects, the Rollout), with the
    platform team's HTTPRoute instead of one of ferryman's."""
    held = cluster(sim, rollout)
    del held.objects[ROUTE]
    kube = kube or FakeKube()
    kube.objects, kube.statuses = held.objects, held.statuses
    kube.put(httproute())
    return kube


def shared_snapshot(sim: Any, rollout: Rollout, kube: FakeKube) -> executor.Snapshot:
    router = router_for(rollout.spec)
    seen = asyncio.run(shared_routes.observe(kube, None, router, rollout, {}, 0.0))
    snap = snapshot(sim, rollout, kube)
    snap.router, snap.route, snap.route_problem = router, seen.route, seen.problem
    snap.foreign_route, snap.blocked = seen.foreign, None
    return snap


def test_a_rollback_patches_the_named_rules_and_never_applies_the_route() -> None:
    sim, rollout = shared_rollout()
    kube = shared_cluster(sim, rollout)
    before = copy.deepcopy(kube.objects[GW])
    done = asyncio.run(
        executor.execute(kube, shared_snapshot(sim, rollout, kube), decide(sim, rollout, "abort"))
    )
    assert ("json-patch", "HTTPRoute", "public") in kube.writes
    assert not any(w[0] == "apply" and w[1] == "HTTPRoute" for w in kube.writes), kube.writes
    after = kube.objects[GW]
    for i in (1, 2):
        assert [(b["name"], b["weight"]) for b in after["spec"]["rules"][i]["backendRefs"]] == [
            ("fraud-1.0.0", 100)
        ]
    assert unmanaged(after) == unmanaged(before) | {"metadata": after["metadata"]}
    assert after["metadata"].get("ownerReferences") is None  # still theirs
    assert done.status.weights is not None and done.status.weights.stable == 100
    cond = condition(done.status, shared_routes.CONDITION)
    assert cond is not None and cond.status == ConditionStatus.TRUE and cond.reason == "Managed"


class EditedOnce(FakeKube):
    """Someone edits the route (inserting a rule first: every index moves) just before
    each of ferryman's first ``edits`` patches lands."""

    edits: int = 1

    async def patch_json(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[Obj]
    ) -> Obj:
        if self.edits > 0:
            self.edits -= 1
            route = self.objects[(api_version, kind, namespace, name)]
            route["spec"]["rules"].insert(0, {"name": f"new-{self.edits}", "backendRefs": []})
            meta = route["metadata"]
            meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return await super().patch_json(api_version, kind, namespace, name, ops)


def test_a_concurrent_edit_is_patched_again_from_a_fresh_read() -> None:
    sim, rollout = shared_rollout()
    kube = shared_cluster(sim, rollout, EditedOnce())
    done = asyncio.run(
        executor.execute(kube, shared_snapshot(sim, rollout, kube), decide(sim, rollout, "abort"))
    )
    rules = kube.objects[GW]["spec"]["rules"]
    assert rules[0] == {"name": "new-0", "backendRefs": []}  # their edit kept
    by_name = {r["name"]: r for r in rules}
    assert [b["name"] for b in by_name["predict"]["backendRefs"]] == ["fraud-1.0.0"]
    assert [b["name"] for b in by_name["explain"]["backendRefs"]] == ["fraud-1.0.0"]
    assert by_name["docs"]["backendRefs"] == [ref("docs", 1)]
    assert kube.writes.count(("json-patch", "HTTPRoute", "public")) == 1
    assert condition(done.status, executor.APPLY_FAILED) is None


def test_a_route_that_keeps_changing_is_reported_after_bounded_attempts() -> None:
    sim, rollout = shared_rollout()
    edited = EditedOnce()
    edited.edits = 100
    kube = shared_cluster(sim, rollout, edited)
    done = asyncio.run(
        executor.execute(kube, shared_snapshot(sim, rollout, kube), decide(sim, rollout, "abort"))
    )
    assert edited.edits == 100 - shared_routes.ATTEMPTS
    failed = condition(done.status, executor.APPLY_FAILED)
    assert failed is not None and failed.status == ConditionStatus.TRUE
    assert f"changed under each of {shared_routes.ATTEMPTS} patches" in failed.message
    # The rollback did not happen: the candidate keeps its capacity and the status.
    assert not any(w[0] in ("delete", "json-patch") for w in kube.writes), kube.writes
    assert kube.deployment_replicas(NS, "fraud-1.1.0") == sim.replicas["1.1.0"]
    assert done.status.candidate_version == "1.1.0"


@pytest.mark.parametrize("change", ["rule removed", "route deleted"])
def test_a_missing_rule_or_route_holds_with_a_condition_and_an_event(change: str) -> None:
    sim, rollout = shared_rollout()
    kube = shared_cluster(sim, rollout)
    if change == "rule removed":
        del kube.objects[GW]["spec"]["rules"][2]
    else:
        del kube.objects[GW]
    seen = shared_snapshot(sim, rollout, kube)
    assert seen.route_problem is not None
    blocked = str(seen.route_problem)
    done = asyncio.run(executor.execute(kube, seen, decide(sim, rollout, "abort", blocked=blocked)))
    assert kube.writes == [("status", "rollouts", rollout.metadata.name)]  # nothing else
    cond = condition(done.status, shared_routes.CONDITION)
    reason = "RuleMissing" if change == "rule removed" else "RouteMissing"
    assert cond is not None and cond.status == ConditionStatus.FALSE and cond.reason == reason
    assert ("explain" if change == "rule removed" else "does not exist") in cond.message
    assert ("Warning", reason) in [(e.type, e.reason) for e in done.events]
    assert condition(done.status, executor.OWNERSHIP) is None  # not a foreign object
    assert done.status.candidate_version == "1.1.0"  # held where it was


def test_keep_stable_leaves_the_named_rules_on_stable_and_the_route_theirs() -> None:
    sim, rollout = shared_rollout()
    kube = shared_cluster(sim, rollout)
    before = copy.deepcopy(kube.objects[GW])
    router = router_for(rollout.spec)
    assert shared_of(router) is not None
    asyncio.run(orphans.keep_stable(kube, rollout, router, "fraud-1.0.0"))
    after = kube.objects[GW]
    for i in (1, 2):
        assert [(b["name"], b["weight"]) for b in after["spec"]["rules"][i]["backendRefs"]] == [
            ("fraud-1.0.0", 100)
        ]
    assert unmanaged(after) == unmanaged(before) | {"metadata": after["metadata"]}
    assert not any(w[0] == "delete" for w in kube.writes)
    assert ("HTTPRoute", "public") not in orphans.kept_objects(rollout, router, "fraud-1.0.0")


def test_a_change_of_a_shared_route_wakes_the_rollouts_that_name_it() -> None:
    from ferryman.handlers import shared_wakeups
    from ferryman.handlers.context import OperatorContext, install

    sim, rollout = shared_rollout()
    body = rollout.model_dump(by_alias=True, mode="json", exclude_none=True)
    index: Any = shared_wakeups.rollouts_by_shared_route  # a kopf handler, called bare
    assert index(body=body, name="fraud", namespace=NS) == {(NS, "HTTPRoute", "public"): "fraud"}
    own = rollout_of(sim).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert (
        index(body=own, name="fraud", namespace=NS) == {}
    )  # {} drops an entry a shared route left (None would keep it)
    memo: dict[str, Any] = {}
    ctx = install(memo, OperatorContext(kube=cast(Any, None), http=cast(Any, None)))

    async def changed(route: str, kind: str = "HTTPRoute") -> set[tuple[str, str]]:
        ctx.wakeups.clear()
        index = {(NS, "HTTPRoute", "public"): ["fraud", "fraud-eu"]}
        handler: Any = shared_wakeups.shared_route_changed
        await handler(
            namespace=NS, name=route, body={"kind": kind}, memo=memo,
            rollouts_by_shared_route=index,
        )  # fmt: skip
        return {k for k, event in ctx.wakeups.items() if event.is_set()}

    assert asyncio.run(changed("public")) == {(NS, "fraud"), (NS, "fraud-eu")}
    assert asyncio.run(changed("other")) == set()
    assert asyncio.run(changed("public", "VirtualService")) == set()


# --- the Argo CD ignoreDifferences of docs/traffic-shared-routes.md -------------------


def documented_ignores() -> dict[str, list[str]]:
    """The jqPathExpressions by kind of the Application on docs/traffic-shared-routes.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "traffic-shared-routes.md").read_text()
    start = "```yaml\napiVersion: argoproj.io/v1alpha1\n"
    app = yaml.safe_load(text.split(start, 1)[1].split("```", 1)[0])
    return {i["kind"]: i["jqPathExpressions"] for i in app["spec"]["ignoreDifferences"]}


def argo_normalized(obj: Obj, expressions: list[str]) -> Obj:
    """``obj`` as Argo CD compares it: each expression's result deleted (Argo CD's diff
    normalizer runs ``del(<expression>)`` with gojq; jq here)."""
    for expression in expressions:
        obj = jq.compile(f"del({expression})").input_value(obj).first()
    return obj


def test_the_documented_ignore_differences_hide_ferrymans_fields_and_only_those() -> None:
    services = {"1.0.0": "fraud-detector-1-0-0", "1.1.0": "fraud-detector-1-1-0"}
    canary = Route(stable="1.0.0", candidate="1.1.0", candidate_weight=30, mirror_percent=20)
    ignores = documented_ignores()

    git = httproute()  # as in Git: the owners' audit mirror, their backends
    git["spec"]["rules"][1]["backendRefs"] = [ref("fraud-detector", 100)]
    live = patched(git, gateway(("predict",)).patch(git, canary, services, 80))
    assert live != git
    expressions = ignores["HTTPRoute"]
    assert argo_normalized(live, expressions) == argo_normalized(git, expressions)
    for edit in (("timeouts", {"request": "1s"}), ("filters", [HEADER])):  # the owners'
        owners = copy.deepcopy(live)
        owners["spec"]["rules"][1][edit[0]] = edit[1]
        assert argo_normalized(owners, expressions) != argo_normalized(git, expressions)

    vs = virtualservice()
    vs["spec"]["http"][1]["route"][0]["destination"]["host"] = "fraud-detector"
    live_vs = patched(vs, istio("primary").patch(vs, canary, services, 80))
    assert "mirror" in live_vs["spec"]["http"][1]
    expressions = ignores["VirtualService"]
    assert argo_normalized(live_vs, expressions) == argo_normalized(vs, expressions)
    owners = copy.deepcopy(live_vs)
    owners["spec"]["http"][1]["timeout"] = "1s"
    assert argo_normalized(owners, expressions) != argo_normalized(vs, expressions)
    # The owners' own mirror (route "audited") is not hidden.
    audited = copy.deepcopy(vs)
    audited["spec"]["http"][2]["mirror"] = {"host": "audit-2"}
    assert argo_normalized(audited, expressions) != argo_normalized(vs, expressions)
