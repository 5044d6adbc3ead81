"""Named rules in a route someone else owns (issue 15 §1): which rules a Rollout manages,
what it reads from them, and the JSON patch (RFC 6902) that makes them carry a ``Route``.

A Rollout may name an existing HTTPRoute (``gatewayAPI.httpRoute``) or VirtualService
(``istio.virtualService``) and rules in it by name (``rules[].name``, ``http[].name``;
never by index: the route's owners reorder rules). ferryman then changes only the named
rules' backends (weights) and its own mirror, nothing else of the route. It cannot
server-side apply such a route: Gateway API marks ``rules``, ``backendRefs`` and
``filters`` atomic and Istio's ``http`` has no list type, so an apply of "just our part"
would take over every rule. The handler (``handlers.shared_routes``) reads the route,
asks ``patch_ops`` here for the operations, and sends them behind a ``test`` of the
``metadata.resourceVersion`` it read (optimistic concurrency); the paths name list
indexes, which that test keeps valid.

Pure: no I/O. Each router module supplies what one rule looks like in its API
(``RuleShape``); this module finds the rules and compares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ferryman.plan.route import Route

Obj = dict[str, Any]


@dataclass(frozen=True)
class Shared:
    """The route a Rollout names (in its namespace) and the names of its rules it manages,
    as the spec lists them (the first one's weights are what status reports)."""

    name: str
    rules: tuple[str, ...]
    field: str  # the spec field that names it, for messages: "gatewayAPI.httpRoute"


class SharedRouteProblem(Exception):
    """The named route cannot carry the Rollout's traffic as it is: a named rule is
    missing, or a rule's mirror is someone else's. ``reason`` is a condition reason
    (CamelCase), the message says what to change."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RuleShape:
    """How one router's API spells a rule: the list of rules under ``spec`` (``rules``,
    ``http``), the key holding the backends (``backendRefs``, ``route``), and the
    functions that build and read one rule's managed fields."""

    rules_key: str
    backends_key: str
    # (route, services by version, port) -> the backends list
    backends: Callable[[Route, Mapping[str, str], int], list[Obj]]
    # (rule as it is, route, services, port, ours: our Service names) -> ops relative to
    # the rule's path for its mirror (empty: it carries the mirror already). Raises
    # SharedRouteProblem.
    mirror_ops: Callable[[Obj, Route, Mapping[str, str], int, frozenset[str]], list[Obj]]


def carries(have: Any, want: Any) -> bool:
    """Whether ``have`` (as the API server returns it) carries ``want``: every key of a
    dict in ``want`` with a value ``have`` carries (``have`` may have more keys: fields
    the API server defaults, such as a backendRef's ``group`` and ``kind``), lists of the
    same length element by element, other values equal."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(carries(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(carries(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have == want)


def find_rules(obj: Obj, rules_key: str, names: Sequence[str]) -> dict[str, int]:
    """The index of each rule named in ``names`` in ``obj.spec.<rules_key>``. Raises
    ``SharedRouteProblem`` (``RuleMissing``) naming every name no rule has, and
    (``RuleAmbiguous``) for a name two rules have (Gateway API refuses that; Istio does
    not)."""
    found: dict[str, int] = {}
    twice: list[str] = []
    for i, rule in enumerate((obj.get("spec") or {}).get(rules_key) or []):
        name = rule.get("name") if isinstance(rule, dict) else None
        if isinstance(name, str) and name in names:
            if name in found:
                twice.append(name)
            found.setdefault(name, i)
    kind, route = obj.get("kind", "route"), (obj.get("metadata") or {}).get("name", "")
    missing = [n for n in names if n not in found]
    if missing:
        raise SharedRouteProblem(
            "RuleMissing",
            f"{kind} {route} has no {rules_key} entry named {', '.join(missing)} (removed or "
            "renamed?): ferryman holds traffic where it is until the rule is back or the "
            "Rollout names another",
        )
    if twice:
        raise SharedRouteProblem(
            "RuleAmbiguous",
            f"{kind} {route} has more than one {rules_key} entry named {', '.join(twice)}",
        )
    return found


def patch_ops(
    obj: Obj,
    shape: RuleShape,
    names: Sequence[str],
    route: Route,
    services: Mapping[str, str],
    port: int,
) -> list[Obj]:
    """The JSON patch operations (RFC 6902, without the resourceVersion ``test``) that
    make every rule of ``obj`` named in ``names`` carry ``route`` (its backends with their
    weights, and its mirror), changing nothing else; empty when they all carry it already
    (the restore decision: a hand edit of weights or of our mirror makes them non-empty).
    ``services``: the Service of each version; ``port``: their port. Raises
    ``SharedRouteProblem`` (``find_rules``, ``shape.mirror_ops``)."""
    at = find_rules(obj, shape.rules_key, names)
    rules = obj["spec"][shape.rules_key]
    ours = frozenset(services.values())
    want = shape.backends(route, services, port)
    ops: list[Obj] = []
    for name in names:
        i = at[name]
        rule, path = rules[i], f"/spec/{shape.rules_key}/{i}"
        if not carries(rule.get(shape.backends_key), want):
            op = "replace" if shape.backends_key in rule else "add"
            ops.append({"op": op, "path": f"{path}/{shape.backends_key}", "value": want})
        for mirror in shape.mirror_ops(rule, route, services, port, ours):
            ops.append({**mirror, "path": path + mirror["path"]})
    return ops


def read_rule(obj: Obj, rules_key: str, names: Sequence[str]) -> Obj | None:
    """The first rule named in ``names`` (what status reports), None when it is missing."""
    try:
        at = find_rules(obj, rules_key, names[:1])
    except SharedRouteProblem:
        return None
    rule: Obj = obj["spec"][rules_key][at[names[0]]]
    return rule


def test_version(obj: Obj) -> Obj:
    """The ``test`` operation that conditions a patch on ``obj``'s resourceVersion: the
    API server applies none of the operations when the route changed since it was read
    (it answers HTTP 422, ``handlers.shared_routes`` reads again and retries)."""
    return {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": (obj.get("metadata") or {}).get("resourceVersion"),
    }
