"""Which backend a route object sends one request to, by its header matches, evaluated
with RE2 (PyPI ``google-re2``, the engine Envoy's ``safe_regex`` uses) the way an
Envoy-based data plane does: a regular expression must match the whole header value.

Covers what ferryman writes (issue 16 §3): an HTTPRoute's rules with ``matches[].headers``
(``Exact``, ``RegularExpression``) and an Istio VirtualService's ``http[].match[].headers``
(``exact``, ``regex``, ``prefix``). Header names compare case-insensitively. Paths, methods
and query parameters are not evaluated (ferryman writes none). Where a rule has several
weighted backends, ``pick`` chooses among them (None: such a rule is an error here).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import re2

Obj = dict[str, Any]
Pick = Callable[[list[tuple[str, int]]], str]


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern)


def _full(pattern: str, value: str) -> bool:
    return _compiled(pattern).fullmatch(value) is not None


def _backend(refs: list[tuple[str, int]], pick: Pick | None) -> str:
    live = [(name, w) for name, w in refs if w > 0]
    if len(live) == 1:
        return live[0][0]
    if pick is None:
        raise ValueError(f"weighted backends {refs} need pick")
    return pick(live)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def httproute_backend(obj: Obj, headers: Mapping[str, str], pick: Pick | None = None) -> str:
    """The Service an HTTPRoute sends a request with ``headers`` to: among the rules with a
    match that holds (a rule without matches holds for all), the one with the most header
    matches, the first in order on a tie (Gateway API's precedence within a route)."""
    have = _lower(headers)
    best: tuple[int, int] | None = None
    chosen: Obj | None = None
    for index, rule in enumerate(obj["spec"]["rules"]):
        for match in rule.get("matches") or [{}]:
            wanted = match.get("headers") or []
            if all(_gateway_header(h, have) for h in wanted):
                rank = (-len(wanted), index)
                if best is None or rank < best:
                    best, chosen = rank, rule
    if chosen is None:
        raise LookupError("no rule matches (the gateway answers 404)")
    refs = [(r["name"], int(r.get("weight", 1))) for r in chosen["backendRefs"]]
    return _backend(refs, pick)


def _gateway_header(h: Obj, have: Mapping[str, str]) -> bool:
    value = have.get(h["name"].lower())
    if value is None:
        return False
    kind = h.get("type", "Exact")
    if kind == "Exact":
        return bool(value == h["value"])
    if kind == "RegularExpression":
        return _full(h["value"], value)
    raise ValueError(f"header match type {kind}")


def virtualservice_backend(obj: Obj, headers: Mapping[str, str], pick: Pick | None = None) -> str:
    """The host a VirtualService sends a request with ``headers`` to: the first ``http``
    route with no ``match`` or a ``match`` entry whose every header holds (Istio's order)."""
    have = _lower(headers)
    for http in obj["spec"]["http"]:
        matches = http.get("match") or [{}]
        if any(
            all(_istio_header(n, m, have) for n, m in (e.get("headers") or {}).items())
            for e in matches
        ):
            refs = [(r["destination"]["host"], int(r.get("weight", 100))) for r in http["route"]]
            return _backend(refs, pick)
    raise LookupError("no route matches")


def _istio_header(name: str, m: Obj, have: Mapping[str, str]) -> bool:
    value = have.get(name.lower())
    if value is None:
        return False
    if "exact" in m:
        return bool(value == m["exact"])
    if "prefix" in m:
        return value.startswith(m["prefix"])
    if "regex" in m:
        return _full(m["regex"], value)
    raise ValueError(f"header match {m}")


def backend(obj: Obj, headers: Mapping[str, str], pick: Pick | None = None) -> str:
    """``httproute_backend`` or ``virtualservice_backend`` by the object's kind."""
    if obj["kind"] == "HTTPRoute":
        return httproute_backend(obj, headers, pick)
    if obj["kind"] == "VirtualService":
        return virtualservice_backend(obj, headers, pick)
    raise ValueError(f"kind {obj['kind']}")
