"""Golden files of the objects each router writes, shaped like the upstream docs:
Gateway API's traffic-splitting and request-mirroring HTTPRoute examples (weighted
backendRefs; a RequestMirror filter with ``percent``), Istio's weighted routing and
mirroring VirtualService examples (``route[].weight``, ``mirror``, ``mirrorPercentage``).
Run with FERRYMAN_UPDATE_GOLDEN=1 to rewrite them after an intended change (locally: under
CI the switch is refused, a CI run only compares)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.api.rollout import GatewayAPIRouting, IstioRouting
from ferryman.plan.route import Route
from ferryman.routing import Router
from ferryman.routing.gatewayapi import GatewayAPIRouter
from ferryman.routing.istio import IstioRouter
from ferryman.routing.service import ServiceRouter

GOLDEN = Path(__file__).parent / "golden"
SERVICES = {"1.2.0": "fraud-detector-1-2-0", "1.3.0": "fraud-detector-1-3-0"}
META = {"labels": {"app.kubernetes.io/managed-by": "ferryman"}}

GATEWAY = GatewayAPIRouter(
    GatewayAPIRouting.model_validate(
        {
            "parentRefs": [{"name": "ml-gateway", "namespace": "infra", "sectionName": "https"}],
            "hostnames": ["fraud.acme.example"],
        }
    )
)
ISTIO = IstioRouter(
    IstioRouting.model_validate({"hosts": ["fraud.acme.example"], "gateways": ["infra/ml-gateway"]})
)
SERVICE = ServiceRouter(model="fraud-detector")

CASES: list[tuple[str, Router, Route]] = [
    ("httproute-canary", GATEWAY, Route("1.2.0", "1.3.0", candidate_weight=10)),
    ("httproute-mirror", GATEWAY, Route("1.2.0", "1.3.0", mirror_percent=20)),
    ("httproute-stable", GATEWAY, Route("1.2.0")),
    ("virtualservice-canary", ISTIO, Route("1.2.0", "1.3.0", candidate_weight=10)),
    ("virtualservice-mirror", ISTIO, Route("1.2.0", "1.3.0", mirror_percent=20)),
    ("service-canary", SERVICE, Route("1.2.0", "1.3.0", candidate_weight=50)),
    ("service-stable", SERVICE, Route("1.2.0")),
]


def build(router: Router, route: Route) -> dict[str, Any]:
    return router.build(
        name="fraud-detector",
        namespace="risk",
        route=route,
        services=SERVICES,
        port=80,
        metadata=dict(META),
    )


def update_golden() -> bool:
    """FERRYMAN_UPDATE_GOLDEN rewrites the golden files; under CI that would make every
    comparison pass against itself, so the switch fails the test there."""
    if not os.environ.get("FERRYMAN_UPDATE_GOLDEN"):
        return False
    if os.environ.get("CI"):
        pytest.fail(
            "FERRYMAN_UPDATE_GOLDEN is refused under CI: rewrite golden files locally, commit them"
        )
    return True


def test_the_golden_update_switch_is_refused_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_UPDATE_GOLDEN", "1")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="refused under CI"):
        update_golden()
    monkeypatch.delenv("CI")
    assert update_golden() is True
    monkeypatch.delenv("FERRYMAN_UPDATE_GOLDEN")
    assert update_golden() is False


@pytest.mark.parametrize(("name", "router", "route"), CASES, ids=[c[0] for c in CASES])
def test_router_output_matches_golden_file(name: str, router: Router, route: Route) -> None:
    path = GOLDEN / f"{name}.yaml"
    got = build(router, route)
    if update_golden():
        path.write_text(yaml.safe_dump(got, sort_keys=False))
    assert got == yaml.safe_load(path.read_text())


@pytest.mark.parametrize(("name", "router", "route"), CASES, ids=[c[0] for c in CASES])
def test_router_reads_back_what_it_wrote(name: str, router: Router, route: Route) -> None:
    read = router.read(build(router, route), {v: k for k, v in SERVICES.items()})
    assert read is not None
    assert (read.stable, read.candidate_weight, read.mirror_percent) == (
        route.stable,
        route.candidate_weight,
        route.mirror_percent,
    )


def test_weights_always_sum_to_100_in_what_is_written() -> None:
    for w in range(0, 101):
        route = build(GATEWAY, Route("1.2.0", "1.3.0", candidate_weight=w))
        assert sum(b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]) == 100
        vs = build(ISTIO, Route("1.2.0", "1.3.0", candidate_weight=w))
        assert sum(x["weight"] for x in vs["spec"]["http"][0]["route"]) == 100


def test_a_route_with_foreign_backends_is_not_read_as_ours() -> None:
    foreign = {"spec": {"rules": [{"backendRefs": [{"name": "someone-else", "weight": 100}]}]}}
    assert GATEWAY.read(foreign, {"fraud-detector-1-2-0": "1.2.0"}) is None
