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
_KIND = "(has({p}.kind) ? {p}.kind : 'Gateway')"
_SAME_GATEWAY = (
    f"p1.name == p2.name && {_NS.format(p='p1')} == {_NS.format(p='p2')} && "
    f"{_KIND.format(p='p1')} == {_KIND.format(p='p2')}"
)
_PARENT_REFS_RULE = (
    # A reference without a sectionName is the only one to its Gateway, and no two
    # references name the same listener of the same Gateway.
    f"self.all(p1, has(p1.sectionName) || self.exists_one(p2, {_SAME_GATEWAY}))"
    f" && self.all(p1, self.exists_one(p2, {_SAME_GATEWAY} && "
    f"{_SECTION.format(p='p1')} == {_SECTION.format(p='p2')}))"
)


GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_KIND = "Gateway"
SERVICE_KIND = "Service"
# A rule of the Rollout's root (the only place CEL reads metadata.name; api.crds): a
# Service parent is the Rollout's live Service, which is named after the Rollout.
SERVICE_PARENT_RULE = {
    "rule": "!has(self.spec.trafficRouting) || !has(self.spec.trafficRouting.gatewayAPI) || "
    "!has(self.spec.trafficRouting.gatewayAPI.parentRefs) || "
    "self.spec.trafficRouting.gatewayAPI.parentRefs.all(p, !has(p.kind) || "
    f"p.kind != '{SERVICE_KIND}' || p.name == self.metadata.name)",
    "message": "a Service parent of gatewayAPI.parentRefs must be the Rollout's live Service, "
    "named after the Rollout (east-west traffic to it is what its HTTPRoute routes)",
    "fieldPath": ".spec.trafficRouting.gatewayAPI.parentRefs",
}


class ServicePort(ApiModel):
    """The Services ferryman creates."""

    port: int = Field(80, ge=1, le=65535, description="Service port (default 80).")


class ParentRef(ApiModel):
    """A Gateway API parentRef: the Gateway (and optionally its listener) to attach to,
    or, for east-west (mesh) traffic, the Rollout's live Service (GAMMA: ``group: ""``,
    ``kind: Service``, named after the Rollout): ferryman then writes a second HTTPRoute,
    ``<rollout>.mesh``, whose parent is that Service (``routing.gatewayapi``)."""

    model_config = model_rules(
        cel(
            f"!has(self.kind) || self.kind == '{GATEWAY_KIND}' || self.kind == '{SERVICE_KIND}'",
            "gatewayAPI.parentRefs[].kind must be Gateway (the default) or Service (mesh "
            'traffic to the Rollout\'s live Service, with group "")',
        ),
        cel(
            f"(has(self.kind) && self.kind == '{SERVICE_KIND}') "
            f"? (has(self.group) && self.group == '') "
            f": (!has(self.group) || self.group == '{GATEWAY_GROUP}')",
            'gatewayAPI.parentRefs[].group must be "" for a Service parent and '
            f"{GATEWAY_GROUP} (the default) for a Gateway",
        ),
        cel(
            f"!has(self.kind) || self.kind != '{SERVICE_KIND}' || (!has(self.__namespace__) "
            "&& !has(self.sectionName) && !has(self.port))",
            "a Service parent is the Rollout's live Service, in its namespace: no namespace, "
            "sectionName or port (ferryman sets the Service port)",
        ),
    )

    group: str | None = Field(
        None,
        max_length=253,
        description=f'{GATEWAY_GROUP} (the default) for a Gateway, "" for a Service.',
    )
    kind: str | None = Field(
        None,
        max_length=63,
        description="Gateway (the default), or Service: the Rollout's live Service, for "
        "east-west (mesh) traffic (GAMMA).",
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the Gateway, or of the Service (the Rollout's name).",
    )
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


# Rules are named, never indexed: the route's owners reorder and insert rules, and a
# list index would then move traffic of a rule nobody named (issue 15).
_NOT_INDEX = cel(
    "!self.matches('^[0-9]+$')",
    "rules are named, not indexed (a route's owners reorder its rules): give the rule a "
    "name in the route and list that name",
)
_UNIQUE = "self.all(x, self.exists_one(y, y == x))"
RuleName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        json_schema_extra=rules(
            cel(
                matches(DNS_SUBDOMAIN),
                "rule names must be lowercase DNS names (Gateway API's SectionName)",
            ),
            _NOT_INDEX,
        ),
    ),
]
RouteName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        json_schema_extra=rules(
            cel(matches(DNS_SUBDOMAIN), "the route's name must be a lowercase DNS name")
        ),
    ),
]
IstioRouteName = Annotated[
    str, Field(min_length=1, max_length=253, json_schema_extra=rules(_NOT_INDEX))
]


class SharedHTTPRoute(ApiModel):
    """An existing HTTPRoute in the Rollout's namespace, owned by someone else, and the
    rules in it whose traffic this Rollout splits (by ``rules[].name``)."""

    name: RouteName = Field(description="Name of the HTTPRoute (in the Rollout's namespace).")
    rules: list[RuleName] = Field(
        min_length=1,
        max_length=16,
        description="Names of the rules (rules[].name) whose backendRefs and RequestMirror "
        "filter ferryman manages; every other field of the route stays its owners'.",
        json_schema_extra=rules(cel(_UNIQUE, "httpRoute.rules must not repeat a name")),
    )


class SharedVirtualService(ApiModel):
    """An existing VirtualService in the Rollout's namespace, owned by someone else, and
    the HTTP routes in it whose traffic this Rollout splits (by ``http[].name``)."""

    name: RouteName = Field(description="Name of the VirtualService (in the Rollout's namespace).")
    routes: list[IstioRouteName] = Field(
        min_length=1,
        max_length=16,
        description="Names of the HTTP routes (http[].name) whose route destinations, "
        "weights and mirror ferryman manages; every other field stays its owners'.",
        json_schema_extra=rules(cel(_UNIQUE, "virtualService.routes must not repeat a name")),
    )


class GatewayAPIRouting(ApiModel):
    """Route with a Gateway API HTTPRoute (weights and RequestMirror percent): one ferryman
    creates (``parentRefs``, ``hostnames``) or named rules of an existing one
    (``httpRoute``)."""

    model_config = model_rules(
        cel(
            "has(self.parentRefs) != has(self.httpRoute)",
            "gatewayAPI needs exactly one of parentRefs (ferryman creates the HTTPRoute) or "
            "httpRoute (ferryman manages named rules of an existing one)",
        ),
        cel(
            "!has(self.hostnames) || has(self.parentRefs)",
            "gatewayAPI.hostnames belong to the HTTPRoute ferryman creates (with parentRefs); "
            "an existing httpRoute keeps its own",
        ),
    )

    parent_refs: list[ParentRef] | None = Field(
        None,
        min_length=1,
        max_length=MAX_PARENT_REFS,
        description="Gateways the HTTPRoute attaches to, and optionally the Rollout's live "
        'Service ({group: "", kind: Service, name: <rollout>}) for east-west traffic.',
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
    http_route: SharedHTTPRoute | None = Field(
        None,
        alias="httpRoute",
        description="An existing HTTPRoute whose named rules ferryman manages (instead of "
        "parentRefs: ferryman then creates no HTTPRoute).",
    )


class IstioRouting(ApiModel):
    """Route with an Istio VirtualService (weights, mirror and mirrorPercentage): one
    ferryman creates (``hosts``, ``gateways``) or named HTTP routes of an existing one
    (``virtualService``)."""

    model_config = model_rules(
        cel(
            "has(self.hosts) != has(self.virtualService)",
            "istio needs exactly one of hosts (ferryman creates the VirtualService) or "
            "virtualService (ferryman manages named routes of an existing one)",
        ),
        cel(
            "!has(self.gateways) || has(self.hosts)",
            "istio.gateways belong to the VirtualService ferryman creates (with hosts); an "
            "existing virtualService keeps its own",
        ),
    )

    hosts: list[ShortStr] | None = Field(
        None, min_length=1, max_length=16, description="Hosts of the VirtualService."
    )
    gateways: list[ShortStr] | None = Field(
        None, max_length=16, description="Gateways of the VirtualService."
    )
    virtual_service: SharedVirtualService | None = Field(
        None,
        alias="virtualService",
        description="An existing VirtualService whose named HTTP routes ferryman manages "
        "(instead of hosts: ferryman then creates no VirtualService).",
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

    @property
    def user_owned_route(self) -> str | None:
        """The field that names a route someone else owns (``gatewayAPI.httpRoute`` or
        ``istio.virtualService``), None when ferryman creates the route object."""
        if self.gateway_api is not None and self.gateway_api.http_route is not None:
            return "gatewayAPI.httpRoute"
        if self.istio is not None and self.istio.virtual_service is not None:
            return "istio.virtualService"
        return None
