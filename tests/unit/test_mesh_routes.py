"""East-west (mesh) routes, issue 15 §2: a Gateway API spec whose parentRefs mix Gateways
and the Rollout's live Service (GAMMA) gives two HTTPRoutes carrying the same weights and
mirror, one per kind of parent; the Service parent alone gives one route on that Service;
Gateways alone no companion (and every companion the spec may have, for clean-up)."""

from __future__ import annotations

from typing import Any

from ferryman.api.rollout import GatewayAPIRouting, IstioRouting
from ferryman.plan.route import Route
from ferryman.routing import RouteRef, companions_of
from ferryman.routing.gatewayapi import GatewayAPIRouter
from ferryman.routing.istio import IstioRouter

SERVICES = {"1.2.0": "fraud-1-2-0", "1.3.0": "fraud-1-3-0"}
GATEWAY = {"name": "ml-gateway", "namespace": "infra"}
MESH = {"group": "", "kind": "Service", "name": "fraud"}


def router(*parents: dict[str, Any]) -> GatewayAPIRouter:
    return GatewayAPIRouter(
        GatewayAPIRouting.model_validate(
            {"parentRefs": list(parents), "hostnames": ["fraud.acme.example"]}
        )
    )


def render(r: GatewayAPIRouter, route: Route) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = dict(
        name="fraud", namespace="risk", route=route, services=SERVICES, port=80, metadata={}
    )
    companion = companions_of(r)
    assert companion is not None
    return [r.build(**kwargs), *companion.companions(**kwargs)]


def test_gateway_and_service_parents_give_two_routes_with_the_same_traffic() -> None:
    r = router(GATEWAY, MESH)
    main, mesh = render(r, Route("1.2.0", "1.3.0", candidate_weight=30, mirror_percent=0))
    assert main["metadata"]["name"] == "fraud"
    assert main["spec"]["parentRefs"] == [GATEWAY]
    assert main["spec"]["hostnames"] == ["fraud.acme.example"]
    assert mesh["kind"] == "HTTPRoute" and mesh["metadata"]["name"] == "fraud.mesh"
    # The live Service on its port; no hostnames (GAMMA routes match the Service).
    assert mesh["spec"]["parentRefs"] == [{**MESH, "port": 80}]
    assert "hostnames" not in mesh["spec"]
    assert main["spec"]["rules"] == mesh["spec"]["rules"]
    assert main["spec"]["rules"][0]["backendRefs"] == [
        {"name": "fraud-1-2-0", "port": 80, "weight": 70},
        {"name": "fraud-1-3-0", "port": 80, "weight": 30},
    ]
    mirror = render(r, Route("1.2.0", "1.3.0", mirror_percent=20))
    assert mirror[0]["spec"]["rules"] == mirror[1]["spec"]["rules"]
    assert mirror[1]["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"] == 20
    assert r.companion_refs("fraud") == (RouteRef(r.api_version, "HTTPRoute", "fraud.mesh"),)
    # What status reads (the main route) is what the companion carries too.
    reverse = {v: k for k, v in SERVICES.items()}
    assert r.read(mesh, reverse) == r.read(main, reverse)


def test_a_service_parent_alone_is_the_main_route_on_the_live_service() -> None:
    r = router(MESH)
    (main,) = render(r, Route("1.2.0"))
    assert main["metadata"]["name"] == "fraud"
    assert main["spec"]["parentRefs"] == [{**MESH, "port": 80}]
    assert "hostnames" not in main["spec"]
    assert r.companion_refs("fraud") == ()
    # The companion it had with a Gateway parent is one it may delete.
    every = r.companion_refs("fraud", every=True)
    assert [x.name for x in every if x.kind == "HTTPRoute"] == ["fraud.mesh"]


def test_gateways_alone_give_no_companion() -> None:
    r = router(GATEWAY)
    (main,) = render(r, Route("1.2.0", "1.3.0", candidate_weight=10))
    assert main["spec"]["parentRefs"] == [GATEWAY]
    assert r.companion_refs("fraud") == ()


def istio(gateways: list[str]) -> IstioRouter:
    return IstioRouter(
        IstioRouting.model_validate({"hosts": ["fraud.acme.example"], "gateways": gateways})
    )


def test_istio_gateways_and_mesh_give_a_gateway_and_a_mesh_virtualservice() -> None:
    r = istio(["infra/ml-gateway", "mesh"])
    kwargs: dict[str, Any] = dict(
        name="fraud",
        namespace="risk",
        route=Route("1.2.0", "1.3.0", candidate_weight=30, mirror_percent=0),
        services=SERVICES,
        port=80,
        metadata={},
    )
    main, (mesh,) = r.build(**kwargs), r.companions(**kwargs)
    assert main["metadata"]["name"] == "fraud"
    assert main["spec"]["gateways"] == ["infra/ml-gateway"]
    assert main["spec"]["hosts"] == ["fraud.acme.example"]
    assert mesh["metadata"]["name"] == "fraud.mesh"
    assert mesh["spec"]["gateways"] == ["mesh"]
    assert mesh["spec"]["hosts"] == ["fraud.risk.svc.cluster.local"]
    assert main["spec"]["http"] == mesh["spec"]["http"]
    assert [d["weight"] for d in mesh["spec"]["http"][0]["route"]] == [70, 30]
    assert [x.name for x in r.companion_refs("fraud")] == ["fraud.mesh"]


def test_istio_mesh_alone_or_gateways_alone_keep_one_virtualservice() -> None:
    for gateways in (["mesh"], ["infra/ml-gateway"]):
        r = istio(gateways)
        kwargs: dict[str, Any] = dict(
            name="fraud", namespace="risk", route=Route("1.2.0"), services=SERVICES, port=80,
            metadata={},
        )  # fmt: skip
        assert r.build(**kwargs)["spec"]["gateways"] == gateways
        assert r.companions(**kwargs) == [] and r.companion_refs("fraud") == ()
        assert [x.name for x in r.companion_refs("fraud", every=True)] == ["fraud.mesh"]


def test_a_grpc_port_gets_a_grpcroute_per_kind_of_parent() -> None:
    r = router(GATEWAY, MESH)
    kwargs: dict[str, Any] = dict(
        name="fraud",
        namespace="risk",
        route=Route("1.2.0", "1.3.0", candidate_weight=30, mirror_percent=0),
        services=SERVICES,
        port=80,
        metadata={},
    )
    assert [o["kind"] for o in r.companions(**kwargs)] == ["HTTPRoute"]
    objs = r.companions(**kwargs, grpc_port=9000)
    grpc = [o for o in objs if o["kind"] == "GRPCRoute"]
    assert [(o["apiVersion"], o["metadata"]["name"]) for o in grpc] == [
        ("gateway.networking.k8s.io/v1", "fraud"),
        ("gateway.networking.k8s.io/v1", "fraud.mesh"),
    ]
    assert grpc[0]["spec"]["parentRefs"] == [GATEWAY]
    assert grpc[0]["spec"]["hostnames"] == ["fraud.acme.example"]
    assert grpc[1]["spec"]["parentRefs"] == [{**MESH, "port": 9000}]
    assert grpc[0]["spec"]["rules"][0]["backendRefs"] == [
        {"name": "fraud-1-2-0", "port": 9000, "weight": 70},
        {"name": "fraud-1-3-0", "port": 9000, "weight": 30},
    ]
    mirror = r.companions(
        **{**kwargs, "route": Route("1.2.0", "1.3.0", mirror_percent=20)}, grpc_port=9000
    )
    assert mirror[1]["spec"]["rules"][0]["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "fraud-1-3-0", "port": 9000}, "percent": 20},
        }
    ]
    assert {(x.kind, x.name) for x in r.companion_refs("fraud", grpc_port=9000)} == {
        ("HTTPRoute", "fraud.mesh"),
        ("GRPCRoute", "fraud"),
        ("GRPCRoute", "fraud.mesh"),
    }


def test_a_rollback_writes_both_routes_before_any_capacity_goes() -> None:
    """The executor writes the mesh route in the same step as the gateway route, both
    before the candidate's Deployment goes (``handlers.companions``), and status after."""
    import asyncio

    from ferryman.api.rollout_traffic import ParentRef
    from ferryman.handlers import executor
    from ferryman.plan import labels
    from unit import test_executor as t

    sim = t.paused_at_ten()
    rollout = t.rollout_of(sim)
    gateway = rollout.spec.traffic_routing.gateway_api
    assert gateway is not None and gateway.parent_refs is not None
    gateway.parent_refs.append(ParentRef.model_validate({**MESH, "name": t.NAME}))
    kube = t.cluster(sim, rollout)
    assert sim.route is not None
    r = t.router(rollout)
    companion = companions_of(r)
    assert companion is not None
    (mesh,) = companion.companions(
        name=t.NAME, namespace=t.NS, route=sim.route,
        services={v: f"fraud-{v}" for v in ("1.0.0", "1.1.0")}, port=80,
        metadata={"labels": {}, "ownerReferences": [labels.owner_reference(rollout)]},
    )  # fmt: skip
    kube.put(mesh)
    decision = t.decide(sim, rollout, "abort")
    seen = t.snapshot(sim, rollout, kube)
    seen.router = r
    done = asyncio.run(executor.execute(kube, seen, decision))
    writes = kube.writes
    main = writes.index(("apply", "HTTPRoute", t.NAME))
    other = writes.index(("apply", "HTTPRoute", f"{t.NAME}.mesh"))
    gone = writes.index(("delete", "Deployment", "fraud-1.1.0"))
    assert main < other < gone < writes.index(("status", "rollouts", t.NAME)), writes
    key = ("gateway.networking.k8s.io/v1", "HTTPRoute", t.NS, f"{t.NAME}.mesh")
    reverse = {"fraud-1.0.0": "1.0.0"}
    assert r.read(kube.objects[key], reverse) == Route(stable="1.0.0")
    assert kube.objects[key]["spec"]["parentRefs"][0]["kind"] == "Service"
    assert done.wrote
