"""Istio: one VirtualService per Rollout, owned by it, or named HTTP routes of an existing
VirtualService someone else owns (``istio.virtualService``, ``routing.shared``): route
weights to the stable and candidate Services, ``mirror`` and ``mirrorPercentage`` for
shadow and blue-green preview mirroring. In a shared VirtualService ferryman's mirror is
a named route's ``mirror`` when it points at one of the Rollout's version Services; a
route that mirrors elsewhere keeps its mirror, and mirroring the candidate there is
refused (``SharedRouteProblem`` ``MirrorTaken``) rather than written over it.

East-west traffic (issue 15 §2): Istio applies a VirtualService to in-cluster calls when
its ``gateways`` include ``mesh`` (or are absent). With ``gateways`` naming Gateways and
``mesh``, ferryman writes the gateway VirtualService ``<rollout>`` (those Gateways, the
spec's hosts) and a companion (``routing.base.CompanionRouter``) ``<rollout>.mesh`` for
the ``mesh`` gateway whose host is the Rollout's live Service
(``<rollout>.<namespace>.svc.cluster.local``: the name its callers use), with the same
weights and mirror, written in the same step (``handlers.companions``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferryman.api import names
from ferryman.api.rollout import IstioRouting, RolloutSpec
from ferryman.plan.route import Route, RouterCapabilities
from ferryman.routing import abtest
from ferryman.routing.base import RouteRef
from ferryman.routing.shared import (
    RuleShape,
    Shared,
    SharedRouteProblem,
    carries,
    patch_ops,
    read_rule,
)

Obj = dict[str, Any]
MESH = "mesh"  # Istio's reserved gateway name: the sidecars, i.e. in-cluster calls


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
    # Its routes send to the versions' HTTP port; a gRPC port needs an HTTP route matched
    # on that port, which a gateway VirtualService cannot name (the match is the Gateway's
    # port): not written, and the GRPCRoute condition says so.
    grpc = False
    companion_kinds: tuple[tuple[str, str, str], ...] = ()

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

    def _mesh_split(self) -> bool:
        """Whether the spec asks for a gateway VirtualService and one for the mesh."""
        gateways = self.config.gateways or []
        return MESH in gateways and any(g != MESH for g in gateways)

    def _vs(
        self, name: str, namespace: str, route: Route, services: Mapping[str, str], port: int,
        metadata: Obj, hosts: list[str], gateways: list[str],
    ) -> Obj:  # fmt: skip
        http: Obj = {"name": "ferryman", "route": destinations(route, services, port)}
        mirror = _mirror(route, services, port)
        if mirror is not None:
            http["mirror"], http["mirrorPercentage"] = mirror
        # An A/B test: header-matched routes instead (routing.abtest).
        routes = [http] if route.users is None else abtest.istio_http(route, services, port)
        spec: Obj = {"hosts": hosts, "http": routes}
        if gateways:
            spec["gateways"] = gateways
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {**metadata, "name": name, "namespace": namespace},
            "spec": spec,
        }

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
        gateways = list(self.config.gateways or [])
        if self._mesh_split():
            gateways = [g for g in gateways if g != MESH]
        hosts = list(self.config.hosts or [])
        return self._vs(name, namespace, route, services, port, metadata, hosts, gateways)

    def companions(
        self,
        *,
        name: str,
        namespace: str,
        route: Route,
        services: Mapping[str, str],
        port: int,
        metadata: Obj,
        grpc_port: int | None = None,
        grpc_route: Route | None = None,
    ) -> list[Obj]:
        if not self._mesh_split():
            return []
        hosts = [f"{name}.{namespace}.svc.cluster.local"]
        mesh_name = names.mesh_route(name)
        return [self._vs(mesh_name, namespace, route, services, port, metadata, hosts, [MESH])]

    def companion_refs(
        self, name: str, *, every: bool = False, grpc_port: int | None = None
    ) -> tuple[RouteRef, ...]:
        if not every and not self._mesh_split():
            return ()
        return (RouteRef(self.api_version, self.kind, names.mesh_route(name)),)

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
