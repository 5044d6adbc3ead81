"""The route rules of an A/B test (``Route.users``, ``plan.experiment``) for the routers
that can match headers: two rules, the first sending the matched requests to the
candidate, the second every other request to the stable version.

- Gateway API (HTTPRoute): a rule with ``matches[].headers`` (type ``Exact``, or
  ``RegularExpression``, whose support and dialect are *implementation-specific* in
  Gateway API: Envoy-based gateways (Envoy Gateway, Istio, Contour) use RE2 as written
  here; check your gateway's conformance report for ``HTTPRouteHeaderMatching`` with
  regular expressions). A rule with a header match takes precedence over one without,
  whatever their order (Gateway API's rule precedence), so a request carrying no header
  (or no matching value) goes to the stable.
- Istio (VirtualService): ``http`` routes are tried in order; the first has
  ``match[].headers`` (``exact`` or ``regex``, RE2, full match), the second none.

Its own module so the routers' weight/mirror code (``routing.gatewayapi``,
``routing.istio``) stays as it is; they call ``gateway_rules`` / ``istio_http`` when the
route has ``users``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferryman.plan.route import Route, UserMatch

Obj = dict[str, Any]
# The Istio route names (http[].name) ferryman writes for an A/B test.
ISTIO_CANDIDATE_ROUTE = "ferryman-abtest"
ISTIO_STABLE_ROUTE = "ferryman"


def _gateway_header(match: UserMatch) -> Obj:
    if match.exact is not None:
        return {"type": "Exact", "name": match.header, "value": match.exact}
    return {"type": "RegularExpression", "name": match.header, "value": match.regex}


def gateway_rules(route: Route, services: Mapping[str, str], port: int) -> list[Obj]:
    """HTTPRoute ``rules``: the matched requests to the candidate, the rest to stable."""
    assert route.users is not None and route.candidate is not None
    return [
        {
            "matches": [{"headers": [_gateway_header(route.users)]}],
            "backendRefs": [{"name": services[route.candidate], "port": port, "weight": 100}],
        },
        {"backendRefs": [{"name": services[route.stable], "port": port, "weight": 100}]},
    ]


def _istio_header(match: UserMatch) -> Obj:
    if match.exact is not None:
        return {match.header: {"exact": match.exact}}
    return {match.header: {"regex": match.regex}}


def _destination(service: str, port: int) -> Obj:
    return {"destination": {"host": service, "port": {"number": port}}, "weight": 100}


def istio_http(route: Route, services: Mapping[str, str], port: int) -> list[Obj]:
    """VirtualService ``http`` routes: the matched requests to the candidate, the rest to
    stable (tried in this order)."""
    assert route.users is not None and route.candidate is not None
    return [
        {
            "name": ISTIO_CANDIDATE_ROUTE,
            "match": [{"headers": _istio_header(route.users)}],
            "route": [_destination(services[route.candidate], port)],
        },
        {"name": ISTIO_STABLE_ROUTE, "route": [_destination(services[route.stable], port)]},
    ]
