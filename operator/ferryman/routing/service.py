"""Plain Services, no mesh: the Service named after the Rollout is the live one (the route
object is that Service: ``owns_live_service``).

- canary: the weight is the replica ratio. While the candidate carries weight, the
  Service selects both versions' pods (by model and Rollout), and the state machine
  keeps stable + candidate replicas at ``replicas``; otherwise it selects only the
  stable version.
- blue-green: the Service selects the stable version; promotion switches its selector
  to the candidate in one write (the preview Service selects the candidate before).
Mirroring is impossible without a proxy; the CRD refuses it for this router.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferryman.api.rollout import RolloutSpec
from ferryman.plan import labels
from ferryman.plan.route import Route, RouterCapabilities

Obj = dict[str, Any]


class ServiceRouter:
    name = "service"
    capabilities = RouterCapabilities(
        mirror=False, weights_by_replicas=True, header_match=False, owns_live_service=True
    )
    api_version = "v1"
    kind = "Service"
    plural = "services"

    def __init__(self, *, model: str, target_port: str = "http") -> None:
        self.model, self.target_port = model, target_port

    @classmethod
    def for_spec(cls, spec: RolloutSpec) -> ServiceRouter | None:
        return cls(model=spec.model) if spec.traffic_routing.service is not None else None

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
        # The live Service is named after its Rollout: it selects that Rollout's pods.
        selector = {
            labels.MODEL: labels.label_value(self.model),
            labels.ROLLOUT: labels.label_value(name),
        }
        if route.candidate is None or route.candidate_weight == 0:
            selector[labels.VERSION] = labels.label_value(route.stable)
        elif route.candidate_weight == 100:
            selector[labels.VERSION] = labels.label_value(route.candidate)
        annotations = {
            f"{labels.PREFIX}/stable-version": route.stable,
            f"{labels.PREFIX}/candidate-weight": str(route.candidate_weight),
        }
        if route.candidate is not None:
            annotations[f"{labels.PREFIX}/candidate-version"] = route.candidate
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {
                **metadata,
                "name": name,
                "namespace": namespace,
                "annotations": annotations,
            },
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [
                    {
                        "name": "http",
                        "port": port,
                        "targetPort": self.target_port,
                        "protocol": "TCP",
                    }
                ],
            },
        }

    def read(self, obj: Obj, versions: Mapping[str, str]) -> Route | None:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        stable = annotations.get(f"{labels.PREFIX}/stable-version")
        if not stable:
            return None
        return Route(
            stable=stable,
            candidate=annotations.get(f"{labels.PREFIX}/candidate-version"),
            candidate_weight=int(annotations.get(f"{labels.PREFIX}/candidate-weight", "0")),
        )
