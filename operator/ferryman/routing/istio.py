"""Istio: one VirtualService per Rollout, owned by it, or named HTTP routes of an existing
VirtualService someone else owns (``istio.virtualService``, ``routing.shared``): route
weights to the stable and candidate Services, ``mirror`` and ``mirrorPercentage`` for
shadow and blue-green preview mirroring. In a shared VirtualService ferryman's mirror is
a named route's ``mirror`` when it points at one of the Rollout's version Services; a
route that mirrors elsewhere keeps its mirror, and mirroring the candidate there is
refused (``SharedRouteProblem`` ``MirrorTaken``) rather than written over it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferryman.api.rollout import IstioRouting, RolloutSpec
from ferryman.plan.route import Route, RouterCapabilities
from ferryman.routing import abtest
from ferryman.routing.shared import (
    RuleShape,
    Shared,
    SharedRouteProblem,
    carries,
    patch_ops,
    read_rule,
)

Obj = dict[str, Any]


def _destination(service: str, port: int) -> Obj:
    return {"host": service, "port": {"number": port}}


def destinations(route: Route, services: Mapping[str, str], port: int) -> list[Obj]:
    """The weighted ``route`` entries of an HTTP route (stable first)."""
    out = [
        {"destination": _destination(services[route.stable], port), "weight": route.stable_weight}
    ]
    if route.candidate is not None:
        out.append(
            {
                "destination": _destination(services[route.candidate], port),
                "weight": route.candidate_weight,
            }
        )
    return out


def _mirror(route: Route, services: Mapping[str, str], port: int) -> tuple[Obj, Obj] | None:
    if route.mirror_percent <= 0 or route.candidate is None:
        return None
    return _destination(services[route.candidate], port), {"value": float(route.mirror_percent)}


def mirror_ops(
    rule: Obj, route: Route, services: Mapping[str, str], port: int, ours: frozenset[str]
) -> list[Obj]:
    """Ops (paths relative to the HTTP route) that make ``rule`` carry ``route``'s mirror
    (``mirror`` and ``mirrorPercentage``). Raises ``SharedRouteProblem`` when the candidate
    is to be mirrored and the route mirrors to a host that is not one of ``ours``."""
    have = rule.get("mirror")
    want = _mirror(route, services, port)
    if have and (have.get("host") not in ours):
        if want is None:
            return []  # the owners' mirror
        raise SharedRouteProblem(
            "MirrorTaken",
            f"VirtualService route {rule.get('name')} mirrors to {have.get('host')} already; "
            "a route has one mirror: remove it there to let ferryman mirror the candidate",
        )
    ops: list[Obj] = []
    if want is None:
        ops += [
            {"op": "remove", "path": f"/{k}"} for k in ("mirror", "mirrorPercentage") if k in rule
        ]
        return ops
    for key, value in zip(("mirror", "mirrorPercentage"), want, strict=True):
        if not carries(rule.get(key), value) or not carries(value, rule.get(key)):
            ops.append(
                {"op": "replace" if key in rule else "add", "path": f"/{key}", "value": value}
            )
    return ops


SHAPE = RuleShape(
    rules_key="http", backends_key="route", backends=destinations, mirror_ops=mirror_ops
)


class IstioRouter:
    name = "istio"
    capabilities = RouterCapabilities(
        mirror=True, weights_by_replicas=False, header_match=True, owns_live_service=False
    )
    api_version = "networking.istio.io/v1"
    kind = "VirtualService"
    plural = "virtualservices"
    shape = SHAPE

    def __init__(self, config: IstioRouting) -> None:
        self.config = config
        ref = config.virtual_service
        self.shared = (
            Shared(name=ref.name, rules=tuple(ref.routes), field="istio.virtualService")
            if ref is not None
            else None
        )

    @classmethod
    def for_spec(cls, spec: RolloutSpec) -> IstioRouter | None:
        config = spec.traffic_routing.istio
        return cls(config) if config is not None else None

    def build(
        self,
        *,
        name: str,
        namespace: str,
        route: Route,
        services: Mapping[str, str],
        port: int,
        metadata: Obj,
    ) -> Obj:
        http: Obj = {"name": "ferryman", "route": destinations(route, services, port)}
        mirror = _mirror(route, services, port)
        if mirror is not None:
            http["mirror"], http["mirrorPercentage"] = mirror
        # An A/B test: header-matched routes instead (routing.abtest).
        routes = [http] if route.users is None else abtest.istio_http(route, services, port)
        spec: Obj = {"hosts": list(self.config.hosts or []), "http": routes}
        if self.config.gateways:
            spec["gateways"] = list(self.config.gateways)
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {**metadata, "name": name, "namespace": namespace},
            "spec": spec,
        }

    def patch(self, obj: Obj, route: Route, services: Mapping[str, str], port: int) -> list[Obj]:
        assert self.shared is not None
        return patch_ops(obj, self.shape, self.shared.rules, route, services, port)

    def read(self, obj: Obj, versions: Mapping[str, str]) -> Route | None:
        if self.shared is not None:
            http = read_rule(obj, "http", self.shared.rules)
        else:
            every = (obj.get("spec") or {}).get("http") or [None]
            ab = abtest.read_istio(every, versions)  # an A/B test's routes (routing.abtest)
            if ab is not None:
                return ab
            http = every[0]
        if http is None:
            return None
        weights: list[tuple[str, int]] = []
        for r in http.get("route") or []:
            version = versions.get(((r.get("destination") or {}).get("host")) or "")
            if version is None:
                return None
            weights.append((version, int(r.get("weight", 100))))
        if not weights:
            return None
        mirror = 0
        host = (http.get("mirror") or {}).get("host")
        if host and (host in versions or self.shared is None):
            mirror = round(float((http.get("mirrorPercentage") or {}).get("value", 100)))
        candidate, cw = (weights[1][0], weights[1][1]) if len(weights) > 1 else (None, 0)
        return Route(
            stable=weights[0][0], candidate=candidate, candidate_weight=cw, mirror_percent=mirror
        )
