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

Reading back (``read_gateway``, ``read_istio``): a route of exactly this shape, with one
header match, is read as the ``Route`` with ``users`` it was built from, so status reports
what the route really does; anything else is not an A/B route (the routers read weights).

Its own module so the routers' weight/mirror code (``routing.gatewayapi``,
``routing.istio``) stays as it is; they call ``gateway_rules`` / ``istio_http`` when the
route has ``users``, and ``read_gateway`` / ``read_istio`` first when reading.
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


def _one_backend(refs: Any, name_of: Any, versions: Mapping[str, str]) -> str | None:
    if not isinstance(refs, list) or len(refs) != 1:
        return None
    return versions.get(name_of(refs[0]) or "")


# What the API server fills in for a match without a path (Gateway API's default).
DEFAULT_PATH = {"type": "PathPrefix", "value": "/"}


def _match(match: Any) -> Obj | None:
    """A match as ferryman wrote it: the defaulted path taken out."""
    if not isinstance(match, dict):
        return None
    return {k: v for k, v in match.items() if not (k == "path" and v == DEFAULT_PATH)}


def read_gateway(rules: list[Obj], versions: Mapping[str, str]) -> Route | None:
    """The A/B ``Route`` of an HTTPRoute's ``rules`` (``versions``: Service -> version)
    when they are the two rules ``gateway_rules`` writes (with what the API server
    defaults: a ``PathPrefix /`` path in every match, a rule without matches given one
    such match), else None."""
    if len(rules) != 2 or not all(isinstance(r, dict) for r in rules):
        return None
    if [_match(m) for m in rules[1].get("matches") or []] not in ([], [{}]):
        return None
    matches = [_match(m) for m in rules[0].get("matches") or []]
    if len(matches) != 1 or matches[0] is None or set(matches[0]) != {"headers"}:
        return None
    headers = matches[0]["headers"]
    if not isinstance(headers, list) or len(headers) != 1:
        return None
    h = headers[0]

    def name(ref: Obj) -> Any:
        return ref.get("name")

    candidate = _one_backend(rules[0].get("backendRefs"), name, versions)
    stable = _one_backend(rules[1].get("backendRefs"), name, versions)
    if candidate is None or stable is None:
        return None
    kind, header, value = h.get("type", "Exact"), str(h.get("name", "")).lower(), h.get("value")
    if kind == "Exact":
        users = UserMatch(header=header, exact=value)
    elif kind == "RegularExpression":
        users = UserMatch(header=header, regex=value)
    else:
        return None
    return Route(stable=stable, candidate=candidate, users=users)


def read_istio(http: list[Obj], versions: Mapping[str, str]) -> Route | None:
    """The A/B ``Route`` of a VirtualService's ``http`` routes when they are the two
    routes ``istio_http`` writes, else None."""
    if len(http) != 2 or not all(isinstance(r, dict) for r in http):
        return None
    if http[0].get("name") != ISTIO_CANDIDATE_ROUTE or "match" in http[1]:
        return None
    match = http[0].get("match")
    if not isinstance(match, list) or len(match) != 1 or set(match[0]) - {"headers"}:
        return None
    headers = match[0].get("headers")
    if not isinstance(headers, dict) or len(headers) != 1:
        return None
    [(header, how)] = headers.items()

    def host(r: Obj) -> Any:
        return (r.get("destination") or {}).get("host")

    candidate = _one_backend(http[0].get("route"), host, versions)
    stable = _one_backend(http[1].get("route"), host, versions)
    if candidate is None or stable is None or not isinstance(how, dict):
        return None
    if set(how) == {"exact"}:
        users = UserMatch(header=header, exact=how["exact"])
    elif set(how) == {"regex"}:
        users = UserMatch(header=header, regex=how["regex"])
    else:
        return None
    return Route(stable=stable, candidate=candidate, users=users)
