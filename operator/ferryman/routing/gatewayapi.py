"""Gateway API: one HTTPRoute per Rollout, owned by it.

One rule with weighted ``backendRefs`` to the stable and candidate Services, and a
``RequestMirror`` filter with ``percent`` (standard channel since v1.3, GEP-3171) when
traffic is mirrored. Weights are written as percentages that always sum to 100.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferryman.api.rollout import GatewayAPIRouting, RolloutSpec
from ferryman.plan.route import Route, RouterCapabilities

Obj = dict[str, Any]


class GatewayAPIRouter:
    name = "gatewayAPI"
    capabilities = RouterCapabilities(
        mirror=True, weights_by_replicas=False, header_match=True, owns_live_service=False
    )
    api_version = "gateway.networking.k8s.io/v1"
    kind = "HTTPRoute"
    plural = "httproutes"

    def __init__(self, config: GatewayAPIRouting) -> None:
        self.config = config

    @classmethod
    def for_spec(cls, spec: RolloutSpec) -> GatewayAPIRouter | None:
        config = spec.traffic_routing.gateway_api
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
        backends = [{"name": services[route.stable], "port": port, "weight": route.stable_weight}]
        if route.candidate is not None:
            backends.append(
                {"name": services[route.candidate], "port": port, "weight": route.candidate_weight}
            )
        rule: Obj = {"backendRefs": backends}
        if route.mirror_percent > 0 and route.candidate is not None:
            rule["filters"] = [
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": {"name": services[route.candidate], "port": port},
                        "percent": route.mirror_percent,
                    },
                }
            ]
        spec: Obj = {
            "parentRefs": [
                r.model_dump(by_alias=True, exclude_none=True) for r in self.config.parent_refs
            ],
            "rules": [rule],
        }
        if self.config.hostnames:
            spec["hostnames"] = list(self.config.hostnames)
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {**metadata, "name": name, "namespace": namespace},
            "spec": spec,
        }

    def read(self, obj: Obj, versions: Mapping[str, str]) -> Route | None:
        rules = (obj.get("spec") or {}).get("rules") or []
        if not rules:
            return None
        weights: list[tuple[str, int]] = []
        for ref in rules[0].get("backendRefs") or []:
            version = versions.get(ref.get("name", ""))
            if version is None:
                return None
            weights.append((version, int(ref.get("weight", 1))))
        if not weights:
            return None
        total = sum(w for _, w in weights) or 1
        mirror = 0
        for f in rules[0].get("filters") or []:
            if f.get("type") == "RequestMirror":
                mirror = int((f.get("requestMirror") or {}).get("percent", 100))
        stable = weights[0][0]
        candidate, cw = (
            (weights[1][0], weights[1][1] * 100 // total) if len(weights) > 1 else (None, 0)
        )
        return Route(stable=stable, candidate=candidate, candidate_weight=cw, mirror_percent=mirror)
