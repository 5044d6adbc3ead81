"""Gateway API: one HTTPRoute per Rollout, owned by it, or named rules of an existing
HTTPRoute someone else owns (``gatewayAPI.httpRoute``, ``routing.shared``).

A rule's weighted ``backendRefs`` go to the stable and candidate Services, and a
``RequestMirror`` filter with ``percent`` (standard channel since v1.3, GEP-3171) mirrors
traffic when asked. Weights are written as percentages that always sum to 100.

East-west traffic (GAMMA, issue 15 §2): a route whose parent is a Gateway carries only the
traffic that comes through that Gateway; in-cluster clients calling the Rollout's live
Service reach the stable version (the Service selects it). A parentRef ``{group: "",
kind: Service}`` (the live Service, named after the Rollout) asks for a route whose parent
is that Service, on its port, so a mesh that implements GAMMA splits those calls too.
Gateway parents and the Service parent never share one route (implementations treat a
route with both kinds of parents differently): with both, the Gateway parents' route is
``<rollout>`` and the Service's is ``<rollout>.mesh`` (``api.names.mesh_route``), a
companion (``routing.base.CompanionRouter``) carrying the same weights and mirror, written
in the same step; with the Service parent alone, ``<rollout>`` is the mesh route.

gRPC (issue 15 §3): when the served versions have a serving port with ``appProtocol:
grpc``, companion GRPCRoutes (standard channel) carry the same weights and mirror to the
versions' Services on that port: ``<rollout>`` for the Gateway parents, ``<rollout>.mesh``
for the Service parent (on the live Service's gRPC port). In a
shared route ferryman's mirror filter is the ``RequestMirror`` whose backend is one of the
Rollout's version Services; other filters (the owners' own mirrors included) stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferryman.api import names
from ferryman.api.rollout import GatewayAPIRouting, RolloutSpec
from ferryman.api.rollout_traffic import SERVICE_KIND, ParentRef
from ferryman.plan.route import Route, RouterCapabilities
from ferryman.routing import abtest
from ferryman.routing.base import RouteRef
from ferryman.routing.shared import RuleShape, Shared, carries, patch_ops, read_rule

Obj = dict[str, Any]
MIRROR = "RequestMirror"


def backends(route: Route, services: Mapping[str, str], port: int) -> list[Obj]:
    """The weighted backendRefs of ``route`` (stable first)."""
    refs = [{"name": services[route.stable], "port": port, "weight": route.stable_weight}]
    if route.candidate is not None:
        refs.append(
            {"name": services[route.candidate], "port": port, "weight": route.candidate_weight}
        )
    return refs


def mirror_filter(route: Route, services: Mapping[str, str], port: int) -> Obj | None:
    """The RequestMirror filter of ``route``, None when it mirrors nothing."""
    if route.mirror_percent <= 0 or route.candidate is None:
        return None
    return {
        "type": MIRROR,
        "requestMirror": {
            "backendRef": {"name": services[route.candidate], "port": port},
            "percent": route.mirror_percent,
        },
    }


def _mirrors_to(f: Obj) -> str | None:
    if f.get("type") != MIRROR:
        return None
    name = ((f.get("requestMirror") or {}).get("backendRef") or {}).get("name")
    return str(name) if name else None


def mirror_ops(
    rule: Obj, route: Route, services: Mapping[str, str], port: int, ours: frozenset[str]
) -> list[Obj]:
    """Ops (paths relative to the rule) that make ``rule``'s filters carry ``route``'s
    mirror: ferryman's RequestMirror (one whose backend is in ``ours``) replaced in place,
    added last, or removed; every other filter kept as it is."""
    filters: list[Obj] = list(rule.get("filters") or [])
    want = mirror_filter(route, services, port)
    mine = [i for i, f in enumerate(filters) if _mirrors_to(f) in ours]
    new = [f for i, f in enumerate(filters) if i not in mine]
    if want is not None:
        new.insert(mine[0] if mine else len(new), want)
    if carries(filters, new):
        return []
    if not new:
        return [{"op": "remove", "path": "/filters"}]
    return [{"op": "replace" if "filters" in rule else "add", "path": "/filters", "value": new}]


SHAPE = RuleShape(
    rules_key="rules", backends_key="backendRefs", backends=backends, mirror_ops=mirror_ops
)


class GatewayAPIRouter:
    name = "gatewayAPI"
    capabilities = RouterCapabilities(
        mirror=True, weights_by_replicas=False, header_match=True, owns_live_service=False
    )
    api_version = "gateway.networking.k8s.io/v1"
    kind = "HTTPRoute"
    plural = "httproutes"
    shape = SHAPE
    grpc = True
    GRPC_API = "gateway.networking.k8s.io/v1"
    companion_kinds = ((GRPC_API, "GRPCRoute", "grpcroutes"),)

    def __init__(self, config: GatewayAPIRouting) -> None:
        self.config = config
        ref = config.http_route
        self.shared = (
            Shared(name=ref.name, rules=tuple(ref.rules), field="gatewayAPI.httpRoute")
            if ref is not None
            else None
        )

    @classmethod
    def for_spec(cls, spec: RolloutSpec) -> GatewayAPIRouter | None:
        config = spec.traffic_routing.gateway_api
        return cls(config) if config is not None else None

    def _parents(self) -> tuple[list[ParentRef], list[ParentRef]]:
        """(Gateway parents, Service parents) of the spec."""
        refs = self.config.parent_refs or []
        return [r for r in refs if r.kind != SERVICE_KIND], [
            r for r in refs if r.kind == SERVICE_KIND
        ]

    def _route(
        self, name: str, namespace: str, route: Route, services: Mapping[str, str], port: int,
        metadata: Obj, parents: list[Obj], hostnames: bool,
    ) -> Obj:  # fmt: skip
        rule: Obj = {"backendRefs": backends(route, services, port)}
        mirror = mirror_filter(route, services, port)
        if mirror is not None:
            rule["filters"] = [mirror]
        # An A/B test: header-matched rules instead (routing.abtest); a GRPCRoute's
        # matches take the same header matches.
        rules = [rule] if route.users is None else abtest.gateway_rules(route, services, port)
        spec: Obj = {"parentRefs": parents, "rules": rules}
        if hostnames and self.config.hostnames:
            spec["hostnames"] = list(self.config.hostnames)
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {**metadata, "name": name, "namespace": namespace},
            "spec": spec,
        }

    @staticmethod
    def _service_parent(rollout: str, port: int) -> Obj:
        # The live Service, on its (HTTP) port: the Service's other ports are not HTTP.
        return {"group": "", "kind": SERVICE_KIND, "name": rollout, "port": port}

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
        gateways, mesh = self._parents()
        if gateways:
            parents = [r.model_dump(by_alias=True, exclude_none=True) for r in gateways]
            return self._route(name, namespace, route, services, port, metadata, parents, True)
        parents = [self._service_parent(name, port)] if mesh else []
        return self._route(name, namespace, route, services, port, metadata, parents, False)

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
        gateways, mesh = self._parents()
        out: list[Obj] = []
        mesh_name = names.mesh_route(name)
        if gateways and mesh:
            parents = [self._service_parent(name, port)]
            out.append(
                self._route(mesh_name, namespace, route, services, port, metadata, parents, False)
            )
        if grpc_port is not None and self.shared is None:
            # A GRPCRoute per kind of parent, on the versions' gRPC port (issue 15 §3).
            pairs: list[tuple[str, list[Obj], bool]] = []
            if gateways:
                dumped = [r.model_dump(by_alias=True, exclude_none=True) for r in gateways]
                pairs.append((name, dumped, True))
            if mesh:
                pairs.append((mesh_name, [self._service_parent(name, grpc_port)], False))
            for grpc_name, parents, hostnames in pairs:
                obj = self._route(
                    grpc_name, namespace, grpc_route or route, services, grpc_port, metadata,
                    parents, hostnames,
                )  # fmt: skip
                obj["apiVersion"], obj["kind"] = self.GRPC_API, "GRPCRoute"
                out.append(obj)
        return out

    def companion_refs(
        self, name: str, *, every: bool = False, grpc_port: int | None = None
    ) -> tuple[RouteRef, ...]:
        gateways, mesh = self._parents()
        mesh_name = names.mesh_route(name)
        refs: list[RouteRef] = []
        if every or (gateways and mesh):
            refs.append(RouteRef(self.api_version, self.kind, mesh_name))
        if every or (grpc_port is not None and gateways and self.shared is None):
            refs.append(RouteRef(self.GRPC_API, "GRPCRoute", name))
        if every or (grpc_port is not None and mesh and self.shared is None):
            refs.append(RouteRef(self.GRPC_API, "GRPCRoute", mesh_name))
        return tuple(refs)

    def patch(self, obj: Obj, route: Route, services: Mapping[str, str], port: int) -> list[Obj]:
        assert self.shared is not None
        return patch_ops(obj, self.shape, self.shared.rules, route, services, port)

    def read(self, obj: Obj, versions: Mapping[str, str]) -> Route | None:
        if self.shared is not None:
            rule = read_rule(obj, "rules", self.shared.rules)
        else:
            every = (obj.get("spec") or {}).get("rules") or [None]
            ab = abtest.read_gateway(every, versions)  # an A/B test's rules (routing.abtest)
            if ab is not None:
                return ab
            rule = every[0]
        if rule is None:
            return None
        weights: list[tuple[str, int]] = []
        for ref in rule.get("backendRefs") or []:
            version = versions.get(ref.get("name", ""))
            if version is None:
                return None
            weights.append((version, int(ref.get("weight", 1))))
        if not weights:
            return None
        total = sum(w for _, w in weights) or 1
        mirror = 0
        for f in rule.get("filters") or []:
            if f.get("type") == MIRROR and (_mirrors_to(f) in versions or self.shared is None):
                mirror = int((f.get("requestMirror") or {}).get("percent", 100))
        stable = weights[0][0]
        candidate, cw = (
            (weights[1][0], weights[1][1] * 100 // total) if len(weights) > 1 else (None, 0)
        )
        return Route(stable=stable, candidate=candidate, candidate_weight=cw, mirror_percent=mirror)
