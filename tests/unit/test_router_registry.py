"""The router registry (``ferryman.routing.registry``): ``router_for(spec)`` picks the
router ``spec.trafficRouting`` selects, each router declares its capabilities, and those
(not the router's kind) drive the plan, the executor, the CLI and the watches. A toy
router registered here, without touching handlers, plan or CLI, is picked and obeyed:
adding a router touches one new module and the registry. And no code outside routing/ and
api/ branches on the router kind."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kopf
import pytest

from ferryman import handlers
from ferryman.api.rollout import Rollout, RolloutPhase, RolloutSpec, TrafficRouting
from ferryman.cli import render
from ferryman.plan import machine
from ferryman.plan.decision import DeploymentState, Observed, VersionRecord
from ferryman.plan.route import Route, RouterCapabilities
from ferryman.routing import (
    NoRouter,
    Router,
    Watch,
    register,
    registered,
    registry,
    router_for,
    watched,
)
from ferryman.routing.gatewayapi import GatewayAPIRouter
from ferryman.routing.istio import IstioRouter
from ferryman.routing.service import ServiceRouter
from unit.machine_sim import Sim, canary_spec, retarget
from unit.test_executor import NAME, cluster, paused_at_ten, rollout_of, run, snapshot

PACKAGE = Path(handlers.__file__).resolve().parents[1]
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
ISTIO = {"istio": {"hosts": ["fraud.example"]}}
SERVICE: dict[str, Any] = {"service": {}}


def spec_with(routing: Mapping[str, Any]) -> RolloutSpec:
    return canary_spec([{"setWeight": 50}, {"pause": {}}], trafficRouting=dict(routing))


# --- the three routers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing", "router_type"),
    [(GATEWAY, GatewayAPIRouter), (ISTIO, IstioRouter), (SERVICE, ServiceRouter)],
)
def test_the_traffic_routing_field_picks_its_router(
    routing: dict[str, Any], router_type: type
) -> None:
    router = router_for(spec_with(routing))
    assert type(router) is router_type
    # The name is the API's spelling of the field that selects it (the CLI shows it).
    assert [router.name] == list(routing)


def test_the_routers_declare_what_they_can_do() -> None:
    caps = {r.name: r.capabilities for r in registered()}
    assert caps == {
        "gatewayAPI": RouterCapabilities(
            mirror=True, weights_by_replicas=False, header_match=True, owns_live_service=False
        ),
        "istio": RouterCapabilities(
            mirror=True, weights_by_replicas=False, header_match=True, owns_live_service=False
        ),
        "service": RouterCapabilities(
            mirror=False, weights_by_replicas=True, header_match=False, owns_live_service=True
        ),
    }


def test_the_routers_that_cannot_mirror_are_the_ones_the_crd_refuses_mirroring_for() -> None:
    from ferryman.api import rollout

    text = Path(rollout.__file__).read_text()
    for r in registered():
        refused = f"trafficRouting.{r.name} cannot mirror" in text
        assert refused == (not r.capabilities.mirror), r.name


def test_a_spec_selecting_no_router_is_refused_by_name() -> None:
    spec = spec_with(GATEWAY).model_copy(update={"traffic_routing": TrafficRouting()})
    with pytest.raises(NoRouter, match="gatewayAPI, istio, service"):
        router_for(spec)


def test_the_operator_watches_every_registered_route_object() -> None:
    assert watched() == [
        Watch("gateway.networking.k8s.io", "v1", "httproutes"),
        Watch("networking.istio.io", "v1", "virtualservices"),
        Watch("", "v1", "services"),
    ]
    selectors = {
        (h.selector.group, h.selector.version, h.selector.any_name)
        for h in kopf.get_default_registry()._watching.get_all_handlers()
        if getattr(h.fn, "__name__", "") == "route_changed" and h.selector is not None
    }
    # ... and every other indexed resource but Deployments (``deployment_changed``).
    from ferryman.handlers.observed import INDEXES

    others = {(i.watch.group, i.watch.version, i.watch.plural) for i in INDEXES}
    others.discard(("apps", "v1", "deployments"))
    assert selectors == {(w.group, w.version, w.plural) for w in watched()} | others


# --- a toy router, registered in the test only -------------------------------------


class IngressRouting(TrafficRouting):
    """What a new router's API field would be (``api.rollout_traffic``)."""

    ingress: dict[str, Any] | None = None


class IngressRouter:
    """A router nobody else knows about: an Ingress whose weight is the replica ratio
    behind one Service, like plain Services."""

    name = "ingress"
    capabilities = RouterCapabilities(
        mirror=False, weights_by_replicas=True, header_match=False, owns_live_service=True
    )
    api_version = "networking.k8s.io/v1"
    kind = "Ingress"
    plural = "ingresses"

    @classmethod
    def for_spec(cls, spec: RolloutSpec) -> IngressRouter | None:
        return cls() if getattr(spec.traffic_routing, "ingress", None) is not None else None

    def build(self, *, name: str, namespace: str, route: Route, **_: Any) -> dict[str, Any]:
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": {"name": name}}

    def read(self, obj: dict[str, Any], versions: Mapping[str, str]) -> Route | None:
        return None


@pytest.fixture
def toy() -> Iterator[type[IngressRouter]]:
    saved = list(registry._ROUTERS)
    register(IngressRouter)
    try:
        yield IngressRouter
    finally:
        registry._ROUTERS[:] = saved


def ingress_spec(base: RolloutSpec) -> RolloutSpec:
    return base.model_copy(update={"traffic_routing": IngressRouting(ingress={"class": "nginx"})})


def test_a_registered_router_is_picked_shown_and_watched(toy: type[IngressRouter]) -> None:
    spec = ingress_spec(spec_with(GATEWAY))
    router: Router = router_for(spec)
    assert isinstance(router, toy)
    assert Watch("networking.k8s.io", "v1", "ingresses") in watched()
    rollout = Rollout.model_validate(
        {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": spec_with(GATEWAY)}
    )
    shown = render.status(rollout.model_copy(update={"spec": spec}))
    assert "(model fraud, canary over ingress)" in shown
    # The others are still picked by their own fields.
    assert type(router_for(spec_with(ISTIO))) is IstioRouter


def test_without_registration_the_toy_spec_has_no_router() -> None:
    with pytest.raises(NoRouter):
        router_for(ingress_spec(spec_with(GATEWAY)))


def half_way() -> Sim:
    """Stable 1.0.0 and candidate 1.1.0 at 50% of 4 replicas, both Ready, paused (over
    Gateway API: the stable keeps all 4 replicas)."""
    sim = Sim(spec_with(GATEWAY))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 50)
    sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED
    assert sim.available == {"1.0.0": 4, "1.1.0": 2}
    return sim


def decide_with(sim: Sim, spec: RolloutSpec) -> Any:
    """What the handler does: the router's capabilities go into ``Observed``."""
    observed = Observed(
        versions=tuple(VersionRecord(f"fraud-{v}", v) for v in sim.versions),
        deployments={v: DeploymentState(r, sim.available[v]) for v, r in sim.replicas.items()},
        now=sim.now,
        capabilities=router_for(spec).capabilities,
        generation=1,
        route=sim.route,
    )
    return machine.decide(spec, sim.status.model_copy(deep=True), observed)


class WeightedIngressRouter(IngressRouter):
    """The same toy declaring real weights (a mesh-like Ingress controller)."""

    capabilities = dataclasses.replace(IngressRouter.capabilities, weights_by_replicas=False)


def test_the_toy_routers_capabilities_drive_the_plan(toy: type[IngressRouter]) -> None:
    sim = half_way()
    spec = ingress_spec(sim.spec)
    by_ratio = decide_with(sim, spec)
    # Weights by replicas: the stable is sized for what the candidate does not carry, and
    # status reports the share of Ready pods behind the live Service (4 stable + 2 now).
    assert by_ratio.deployments == {"1.0.0": 2, "1.1.0": 2}
    assert by_ratio.status.weights.candidate == 33
    register(WeightedIngressRouter)  # same name: replaces the toy
    assert type(router_for(spec)) is WeightedIngressRouter
    by_weight = decide_with(sim, spec)
    # Real weights: the stable keeps every replica, status reports the route's weight.
    assert by_weight.deployments == {"1.0.0": 4, "1.1.0": 2}
    assert by_weight.status.weights.candidate == 50


class OwnsLiveGateway(GatewayAPIRouter):
    """Gateway API as a router whose route object were the live Service."""

    capabilities = dataclasses.replace(GatewayAPIRouter.capabilities, owns_live_service=True)


@pytest.mark.parametrize("owns", [False, True])
def test_the_executor_writes_the_live_service_only_for_routers_that_do_not_own_it(
    owns: bool,
) -> None:
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    kube = cluster(sim, rollout)
    seen = snapshot(sim, rollout, kube)
    if owns:
        config = rollout.spec.traffic_routing.gateway_api
        assert config is not None
        seen = dataclasses.replace(seen, router=OwnsLiveGateway(config))
    decision = machine.decide(
        rollout.spec,
        rollout.status,
        dataclasses.replace(sim.observed(), capabilities=seen.router.capabilities),
    )
    run(kube, seen, decision)
    assert ("apply", "HTTPRoute", NAME) in kube.writes
    assert (("apply", "Service", NAME) in kube.writes) is not owns, kube.writes


# --- no branching on the router kind outside routing/ and api/ -----------------------

KIND_BRANCHES = [
    re.compile(r"isinstance\([^)]*Router\b"),
    re.compile(r"\b(?:gateway_api|istio|service)\s+is\s+(?:not\s+)?None"),
    re.compile(r"traffic_routing\s*\.\s*(?:gateway_api|istio|service)\b"),
    re.compile(r"\b(?:GatewayAPI|Istio|Service)Router\b"),
    re.compile(r"\bratio_mode\b"),
]


def kind_branches(text: str) -> list[str]:
    """The lines of ``text`` that name a router kind to branch on it."""
    return [
        line.strip() for line in text.splitlines() if any(p.search(line) for p in KIND_BRANCHES)
    ]


def test_the_check_finds_each_kind_branch() -> None:
    for line in [
        "if not isinstance(router, ServiceRouter):",
        "if routing.gateway_api is not None:",
        "elif spec.traffic_routing.istio:",
        "return spec.traffic_routing.service is not None",
        "if ratio_mode(spec):",
    ]:
        assert kind_branches(line) == [line], line
    assert kind_branches("router = router_for(spec)\nif router.capabilities.mirror:") == []


def test_no_code_outside_routing_and_api_branches_on_the_router_kind() -> None:
    found = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ("routing", "api")
        and (hits := kind_branches(path.read_text()))
    }
    assert found == {}
