"""Istio: one VirtualService per Rollout, owned by it: route weights to the stable and
candidate Services, ``mirror`` and ``mirrorPercentage`` for shadow and blue-green
preview mirroring."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferryman.api.rollout import IstioRouting, RolloutSpec
from ferryman.plan.route import Route, RouterCapabilities

Obj = dict[str, Any]


class IstioRouter:
    name = "istio"
    capabilities = RouterCapabilities(
        mirror=True, weights_by_replicas=False, header_match=True, owns_live_service=False
    )
    api_version = "networking.istio.io/v1"
    kind = "VirtualService"
    plural = "virtualservices"

    def __init__(self, config: IstioRouting) -> None:
        self.config = config

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
        def destination(version: str) -> Obj:
            return {"host": services[version], "port": {"number": port}}

        routes = [{"destination": destination(route.stable), "weight": route.stable_weight}]
        if route.candidate is not None:
            routes.append(
                {"destination": destination(route.candidate), "weight": route.candidate_weight}
            )
        http: Obj = {"name": "ferryman", "route": routes}
        if route.mirror_percent > 0 and route.candidate is not None:
            http["mirror"] = destination(route.candidate)
            http["mirrorPercentage"] = {"value": float(route.mirror_percent)}
        spec: Obj = {"hosts": list(self.config.hosts), "http": [http]}
        if self.config.gateways:
            spec["gateways"] = list(self.config.gateways)
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {**metadata, "name": name, "namespace": namespace},
            "spec": spec,
        }

    def read(self, obj: Obj, versions: Mapping[str, str]) -> Route | None:
        http = (obj.get("spec") or {}).get("http") or []
        if not http:
            return None
        weights: list[tuple[str, int]] = []
        for r in http[0].get("route") or []:
            version = versions.get(((r.get("destination") or {}).get("host")) or "")
            if version is None:
                return None
            weights.append((version, int(r.get("weight", 100))))
        if not weights:
            return None
        mirror = 0
        if http[0].get("mirror"):
            mirror = round(float((http[0].get("mirrorPercentage") or {}).get("value", 100)))
        candidate, cw = (weights[1][0], weights[1][1]) if len(weights) > 1 else (None, 0)
        return Route(
            stable=weights[0][0], candidate=candidate, candidate_weight=cw, mirror_percent=mirror
        )
