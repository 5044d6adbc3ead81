"""The abTest strategy's API, its refusals and the routes it renders (issue 16 §1, §3):
which requests each match sends to the candidate, on both routers, and that a Rollout
whose abTest cannot run is Invalid with the reason and writes nothing."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from typing import Any

import pytest

from cases.api_cases import AB_OBJECTIVE, AB_TEST
from ferryman.api.rollout import RolloutPhase, RolloutSpec
from ferryman.api.rollout_experiment import Users
from ferryman.plan import experiment
from ferryman.plan.route import Route, UserMatch
from ferryman.plan.stages import Experiment, stages
from ferryman.routing import router_for
from ferryman.routing.gatewayapi import GatewayAPIRouter
from ferryman.routing.istio import IstioRouter
from unit.machine_sim import Sim
from unit.test_machine_strategies import ISTIO, SERVICE, spec_with

SERVICES = {"1.0.0": "fraud-1-0-0", "1.1.0": "fraud-1-1-0"}
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}}


def users(value: dict[str, Any]) -> Users:
    return Users.model_validate(value)


def percent(p: int, **user_id: str) -> Users:
    return users({"percentOfUsers": {"percent": p, "userId": user_id}})


def full(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


@pytest.mark.parametrize("p", range(1, 100))
def test_every_percent_picks_the_nearest_share_of_256_buckets(p: int) -> None:
    """The regex for each percent matches exactly k of the 256 two-digit endings, in both
    cases, and k / 256 is within 1/512 of the percent asked."""
    k = experiment.bucket_count(p)
    assert abs(k / 256 - p / 100) <= 1 / 512
    tail = experiment.trailing_hex(k)
    hits = [v for v in range(256) if full(f"({tail})", f"{v:02x}")]
    assert hits == list(range(k))
    assert [v for v in range(256) if full(f"({tail})", f"{v:02X}")] == hits


def test_percent_by_header_matches_the_ids_last_two_hex_digits() -> None:
    m = experiment.user_match(percent(25, header="x-user-id"))
    assert m.header == "x-user-id" and m.exact is None and m.share == 64 / 256
    assert m.regex == "^.*([0-3][0-9a-fA-F])$"
    assert full(m.regex, "5f0c2a7e-0000-4000-8000-00000000003F")
    assert not full(m.regex, "5f0c2a7e-0000-4000-8000-000000000040")
    assert not full(m.regex, "user-3z")  # not hex: stable
    assert not full(m.regex, "")


def test_percent_by_cookie_reads_only_that_cookie() -> None:
    m = experiment.user_match(percent(50, cookie="uid"))
    assert m.header == "cookie" and m.regex is not None
    assert full(m.regex, "uid=abc01")
    assert full(m.regex, "theme=dark; uid=abc7f; lang=en")
    assert full(m.regex, "theme=dark;uid=abc7f")
    assert not full(m.regex, "theme=dark; uid=abc80; lang=en")
    assert not full(m.regex, "xuid=abc01")  # another cookie whose name ends in uid
    assert not full(m.regex, "uidx=abc01")
    assert not full(m.regex, "theme=abc01")
    assert not full(m.regex, "uid=abc01x; a=1")  # the id does not end in hex digits


def test_explicit_cohorts() -> None:
    m = experiment.user_match(users({"header": {"name": "x-beta", "value": "yes"}}))
    assert m == UserMatch(header="x-beta", exact="yes")
    m = experiment.user_match(users({"cookie": {"name": "beta.flag", "value": "a+b"}}))
    assert m.header == "cookie" and m.regex is not None and m.share is None
    assert full(m.regex, "x=1; beta.flag=a+b")
    assert full(m.regex, "beta.flag=a+b; x=1")
    assert not full(m.regex, "betaxflag=a+b")  # '.' is literal
    assert not full(m.regex, "beta.flag=aab")  # '+' is literal
    assert not full(m.regex, "beta.flag=a+bc")


def test_gateway_api_renders_a_header_matched_rule_then_the_stable_rule() -> None:
    route = Route(stable="1.0.0", candidate="1.1.0", users=UserMatch("x-user-id", regex="^.*0$"))
    obj = GatewayAPIRouter.for_spec(spec_with(AB_TEST, GATEWAY)).build(  # type: ignore[union-attr]
        name="fraud", namespace="ns", route=route, services=SERVICES, port=80, metadata={}
    )
    assert obj["spec"]["rules"] == [
        {
            "matches": [
                {"headers": [{"type": "RegularExpression", "name": "x-user-id", "value": "^.*0$"}]}
            ],
            "backendRefs": [{"name": "fraud-1-1-0", "port": 80, "weight": 100}],
        },
        {"backendRefs": [{"name": "fraud-1-0-0", "port": 80, "weight": 100}]},
    ]
    exact = Route(stable="1.0.0", candidate="1.1.0", users=UserMatch("x-beta", exact="yes"))
    obj = GatewayAPIRouter.for_spec(spec_with(AB_TEST, GATEWAY)).build(  # type: ignore[union-attr]
        name="fraud", namespace="ns", route=exact, services=SERVICES, port=80, metadata={}
    )
    header = obj["spec"]["rules"][0]["matches"][0]["headers"][0]
    assert header == {"type": "Exact", "name": "x-beta", "value": "yes"}


def test_istio_renders_the_matched_route_first() -> None:
    route = Route(stable="1.0.0", candidate="1.1.0", users=UserMatch("cookie", regex="^b=1$"))
    obj = IstioRouter.for_spec(spec_with(AB_TEST, ISTIO)).build(  # type: ignore[union-attr]
        name="fraud", namespace="ns", route=route, services=SERVICES, port=80, metadata={}
    )
    first, second = obj["spec"]["http"]
    assert first["match"] == [{"headers": {"cookie": {"regex": "^b=1$"}}}]
    assert [r["destination"]["host"] for r in first["route"]] == ["fraud-1-1-0"]
    assert "match" not in second
    assert [r["destination"]["host"] for r in second["route"]] == ["fraud-1-0-0"]


def test_without_users_the_routes_are_unchanged() -> None:
    route = Route(stable="1.0.0", candidate="1.1.0", candidate_weight=10)
    obj = GatewayAPIRouter.for_spec(spec_with(AB_TEST, GATEWAY)).build(  # type: ignore[union-attr]
        name="fraud", namespace="ns", route=route, services=SERVICES, port=80, metadata={}
    )
    assert len(obj["spec"]["rules"]) == 1 and "matches" not in obj["spec"]["rules"][0]


def test_the_strategy_is_one_stage_with_its_duration() -> None:
    spec = spec_with({"abTest": {**AB_TEST["abTest"], "duration": "336h"}}, GATEWAY)
    assert spec.strategy.kind == "abTest"
    [stage] = stages(spec)
    assert isinstance(stage, Experiment) and stage.duration is not None
    assert stage.duration.total_seconds() == 336 * 3600
    assert spec.strategy.ab_test is not None
    assert spec.strategy.ab_test.objective.alpha == 0.05
    assert spec.strategy.ab_test.on_candidate_wins == "promote"


SHARED_GATEWAY = {"gatewayAPI": {"httpRoute": {"name": "public", "rules": ["predict"]}}}
SHARED_ISTIO = {"istio": {"virtualService": {"name": "public", "routes": ["predict"]}}}


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (SERVICE, "strategy.abTest needs a router that can route by header or cookie"),
        (SHARED_GATEWAY, "strategy.abTest on a route you own"),
        (SHARED_ISTIO, "strategy.abTest on a route you own"),
    ],
)
def test_an_abtest_that_cannot_run_is_invalid_and_writes_nothing(
    routing: dict[str, Any], message: str
) -> None:
    spec = spec_with(AB_TEST, routing)
    sim = Sim(spec)
    d = sim.reconcile()
    assert sim.status.phase == RolloutPhase.INVALID
    assert (sim.status.message or "").startswith(message)
    assert d.route is None and d.deployments is None
    assert sim.writes == []  # no Deployment, no route
    assert [e.reason for e in d.events] == ["Invalid"]


@pytest.mark.parametrize("routing", [GATEWAY, ISTIO], ids=["gatewayAPI", "istio"])
def test_an_abtest_over_a_route_ferryman_creates_runs(routing: dict[str, Any]) -> None:
    sim = Sim(spec_with(AB_TEST, routing))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)  # the first version
    assert experiment.refusal(sim.spec, router_for(sim.spec).capabilities) is None


def test_objective_defaults_and_bounds() -> None:
    spec = spec_with(
        {"abTest": {**AB_TEST["abTest"], "objective": {**AB_OBJECTIVE, "alpha": 0.01}}}, GATEWAY
    )
    assert spec.strategy.ab_test is not None
    assert spec.strategy.ab_test.objective.alpha == 0.01
    with pytest.raises(ValueError, match="mde"):
        RolloutSpec.model_validate(
            {
                **spec.model_dump(by_alias=True, exclude_none=True),
                "strategy": {
                    "abTest": {**AB_TEST["abTest"], "objective": {**AB_OBJECTIVE, "mde": 1}}
                },
            }
        )


REVERSE = {name: version for version, name in SERVICES.items()}
MATCHES = [
    UserMatch("x-beta", exact="yes"),
    UserMatch("x-user-id", regex="^.*([0][0-9a-fA-F]|[1][0-9])$", share=26 / 256),
    UserMatch("cookie", regex="^(.*;)?[ \\t]*uid=([^;]*([0-3][0-9a-fA-F]))[ \\t]*(;.*)?$"),
]


@pytest.mark.parametrize("routing", [GATEWAY, ISTIO], ids=["gatewayAPI", "istio"])
@pytest.mark.parametrize("match", MATCHES, ids=["exact", "header-regex", "cookie-regex"])
def test_an_ab_route_reads_back_as_written(routing: dict[str, Any], match: UserMatch) -> None:
    """Status reports what the route does: the A/B route reads back as the Route it was
    built from (the expected share is not in the route, so it reads back as None)."""
    router = router_for(spec_with(AB_TEST, routing))
    route = Route(stable="1.0.0", candidate="1.1.0", users=match)
    obj = router.build(
        name="fraud", namespace="ns", route=route, services=SERVICES, port=80, metadata={}
    )
    want = Route(stable="1.0.0", candidate="1.1.0", users=replace(match, share=None))
    assert router.read(obj, REVERSE) == want
    # a weighted route is read as before
    weighted = Route(stable="1.0.0", candidate="1.1.0", candidate_weight=30)
    obj = router.build(
        name="fraud", namespace="ns", route=weighted, services=SERVICES, port=80, metadata={}
    )
    assert router.read(obj, REVERSE) == weighted


def test_someone_elses_two_rules_are_not_read_as_an_ab_route() -> None:
    router = router_for(spec_with(AB_TEST, GATEWAY))
    route = Route(stable="1.0.0", candidate="1.1.0", users=MATCHES[0])
    obj = router.build(
        name="fraud", namespace="ns", route=route, services=SERVICES, port=80, metadata={}
    )
    unknown = copy.deepcopy(obj)
    unknown["spec"]["rules"][0]["backendRefs"][0]["name"] = "other-service"
    assert router.read(unknown, REVERSE) is None
    two_matches = copy.deepcopy(obj)
    two_matches["spec"]["rules"][0]["matches"][0]["path"] = {"type": "PathPrefix", "value": "/v2"}
    read = router.read(two_matches, REVERSE)  # read as weights (of one Service): not A/B
    assert read is None or read.users is None


def test_exclusive_bounds_are_openapi_v3_booleans_in_the_crds() -> None:
    """pydantic's gt/lt give JSON Schema 2020-12 numbers; the API server refuses a CRD
    with them (found applying the abTest's objective bounds)."""
    from ferryman.api import crds

    found: list[tuple[str, Any]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("exclusiveMinimum", "exclusiveMaximum"):
                    found.append((f"{path}.{key}", value))
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(crds.documents(), "")
    assert found and all(value is True for _, value in found), found
    mde = "objective.properties.mde"
    assert {p.rsplit(".", 1)[1] for p, _ in found if mde in p} == {
        "exclusiveMinimum",
        "exclusiveMaximum",
    }


def test_an_ab_httproute_reads_back_with_what_the_api_server_defaults() -> None:
    """The API server gives every HTTPRoute match a PathPrefix / path, a rule without
    matches one such match, and backendRefs group, kind and weight (found in e2e)."""
    router = router_for(spec_with(AB_TEST, GATEWAY))
    route = Route(stable="1.0.0", candidate="1.1.0", users=MATCHES[1])
    obj = router.build(
        name="fraud", namespace="ns", route=route, services=SERVICES, port=80, metadata={}
    )
    rules = obj["spec"]["rules"]
    path = {"type": "PathPrefix", "value": "/"}
    rules[0]["matches"][0]["path"] = dict(path)
    rules[1]["matches"] = [{"path": dict(path)}]
    for rule in rules:
        for ref in rule["backendRefs"]:
            ref.update(group="", kind="Service")
    assert router.read(obj, REVERSE) == route
