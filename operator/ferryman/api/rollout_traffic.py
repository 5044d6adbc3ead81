"""``spec.trafficRouting`` and ``spec.service``: which router splits traffic (exactly one
of Gateway API, Istio or plain Services) and the port of the Services ferryman creates.
A module of its own so a new router's API lands next to the others, not in a
monolith.
"""

from __future__ import annotations

from pydantic import Field

from ferryman.api.common import ApiModel, ShortStr, cel, model_rules


class ServicePort(ApiModel):
    """The Services ferryman creates."""

    port: int = Field(80, ge=1, le=65535, description="Service port (default 80).")


class ParentRef(ApiModel):
    """A Gateway API parentRef: the Gateway (and optionally its listener) to attach to."""

    name: str = Field(max_length=253, description="Name of the Gateway.")
    namespace: str | None = Field(None, max_length=63, description="Namespace of the Gateway.")
    section_name: str | None = Field(None, max_length=253, description="Listener name.")
    port: int | None = Field(None, ge=1, le=65535, description="Listener port.")


class GatewayAPIRouting(ApiModel):
    """Route with a Gateway API HTTPRoute (weights and RequestMirror percent)."""

    parent_refs: list[ParentRef] = Field(
        min_length=1, max_length=16, description="Gateways the HTTPRoute attaches to."
    )
    hostnames: list[ShortStr] | None = Field(
        None, max_length=16, description="Hostnames of the HTTPRoute."
    )


class IstioRouting(ApiModel):
    """Route with an Istio VirtualService (weights, mirror and mirrorPercentage)."""

    hosts: list[ShortStr] = Field(
        min_length=1, max_length=16, description="Hosts of the VirtualService."
    )
    gateways: list[ShortStr] | None = Field(
        None, max_length=16, description="Gateways of the VirtualService."
    )


class ServiceRouting(ApiModel):
    """No mesh: canary by replica ratio behind one Service, blue-green by switching the
    Service's selector. Cannot mirror traffic."""


class TrafficRouting(ApiModel):
    """How traffic is split: exactly one of gatewayAPI, istio or service."""

    model_config = model_rules(
        cel(
            "[has(self.gatewayAPI), has(self.istio), has(self.service)].exists_one(x, x)",
            "trafficRouting needs exactly one router: gatewayAPI, istio or service",
        )
    )

    gateway_api: GatewayAPIRouting | None = Field(
        None, alias="gatewayAPI", description="Gateway API HTTPRoute routing."
    )
    istio: IstioRouting | None = Field(None, description="Istio VirtualService routing.")
    service: ServiceRouting | None = Field(
        None, description="Plain Services (no mesh, no mirroring)."
    )
