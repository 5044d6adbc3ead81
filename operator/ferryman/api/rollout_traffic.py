"""``spec.trafficRouting`` and ``spec.service``: which router splits traffic (exactly one
of Gateway API, Istio or plain Services) and the port of the Services ferryman creates.
A module of its own so a new router's API lands next to the others, not in a
monolith.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ferryman.api.common import ApiModel, ShortStr, cel, dns_label_rule, matches, model_rules, rules

# Gateway API's own patterns (gateway.networking.k8s.io/v1 HTTPRoute): a value the
# HTTPRoute would refuse is refused here, where the user sees it, not when ferryman
# writes the route (found by the reconcile fuzz, issue 13 §3).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Hostname = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        json_schema_extra=rules(
            cel(
                matches(HOSTNAME),
                "gatewayAPI.hostnames must be lowercase DNS names, optionally starting with "
                "'*.' (e.g. fraud.acme.example, *.acme.example); no IPs",
            )
        ),
    ),
]
# The HTTPRoute's own bound (Gateway API: spec.parentRefs maxItems 32), so every Rollout
# whose HTTPRoute the API server would take is taken; the pairwise CEL rule below fits the
# API server's cost budget at this size (tests/e2e/test_review13_repros.py, R6).
MAX_PARENT_REFS = 32
# CEL sees a property named like a CEL keyword as __name__; optionals (p.?x) cost too much
# in the API server's estimate, so absent values are spelled out.
_NS = "(has({p}.__namespace__) ? {p}.__namespace__ : '')"
_SECTION = "(has({p}.sectionName) ? {p}.sectionName : '')"
_SAME_GATEWAY = f"p1.name == p2.name && {_NS.format(p='p1')} == {_NS.format(p='p2')}"
_PARENT_REFS_RULE = (
    # A reference without a sectionName is the only one to its Gateway, and no two
    # references name the same listener of the same Gateway.
    f"self.all(p1, has(p1.sectionName) || self.exists_one(p2, {_SAME_GATEWAY}))"
    f" && self.all(p1, self.exists_one(p2, {_SAME_GATEWAY} && "
    f"{_SECTION.format(p='p1')} == {_SECTION.format(p='p2')}))"
)


class ServicePort(ApiModel):
    """The Services ferryman creates."""

    port: int = Field(80, ge=1, le=65535, description="Service port (default 80).")


class ParentRef(ApiModel):
    """A Gateway API parentRef: the Gateway (and optionally its listener) to attach to."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Gateway.")
    namespace: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description="Namespace of the Gateway.",
        json_schema_extra=rules(dns_label_rule("gatewayAPI.parentRefs[].namespace")),
    )
    section_name: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="Listener name.",
        json_schema_extra=rules(
            cel(
                matches(DNS_SUBDOMAIN),
                "gatewayAPI.parentRefs[].sectionName must be a lowercase DNS name "
                "(a Gateway listener's name)",
            )
        ),
    )
    port: int | None = Field(None, ge=1, le=65535, description="Listener port.")


class GatewayAPIRouting(ApiModel):
    """Route with a Gateway API HTTPRoute (weights and RequestMirror percent)."""

    parent_refs: list[ParentRef] = Field(
        min_length=1,
        max_length=MAX_PARENT_REFS,
        description="Gateways the HTTPRoute attaches to.",
        json_schema_extra=rules(
            cel(
                _PARENT_REFS_RULE,
                "gatewayAPI.parentRefs: references to the same Gateway (name and namespace) "
                "each need a sectionName, a different one (as the HTTPRoute requires)",
            )
        ),
    )
    hostnames: list[Hostname] | None = Field(
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
