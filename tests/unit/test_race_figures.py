"""bench/race_figures.py: the side-by-side race reads both routers' weights, pairs each
promote with the first route change after it (never an unchanged re-apply), and reports
ratios peer/ferryman per router with missing figures as "-"."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.race_figures import ratio, reactions, render, route_weights, share  # noqa: E402


def test_route_weights_of_an_httproute_and_a_virtualservice() -> None:
    refs = [{"name": "m-primary", "weight": 80}, {"name": "m-canary", "weight": 20}]
    route = {"spec": {"rules": [{"backendRefs": refs}]}}
    dests = [
        {"destination": {"host": "m-stable"}, "weight": 60},
        {"destination": {"host": "m-canary"}, "weight": 40},
    ]
    vs = {"spec": {"http": [{"route": dests}]}}
    lone = {"spec": {"http": [{"route": [{"destination": {"host": "m-1-0-0"}}]}]}}
    assert route_weights(route) == {"m-primary": 80, "m-canary": 20}
    assert route_weights(vs) == {"m-stable": 60, "m-canary": 40}
    assert route_weights(lone) == {"m-1-0-0": 100}
    assert route_weights({"spec": {}}) == {}
    assert share(route_weights(vs), "-canary") == 40.0
    assert share({"m-1-0-0": 0, "m-1-1-0": 0}, "-1-1-0") == 0.0


def test_each_promote_pairs_with_the_first_change_after_it() -> None:
    changes = [
        (1.0, {"s": 100, "c": 0}),
        (2.0, {"s": 80, "c": 20}),
        (5.5, {"s": 80, "c": 20}),  # re-applied unchanged: not a reaction
        (6.0, {"s": 60, "c": 40}),
        (9.0, {"s": 40, "c": 60}),
    ]
    assert reactions([5.0, 8.5, 10.0], changes) == [1.0, 0.5, None]
    assert reactions([], changes) == []


def test_render_gives_ratios_per_router_and_lists_errors() -> None:
    results: list[dict[str, Any]] = [
        {"tool": "ferryman", "router": "istio", "scenario": "a", "reaction_s": 0.5,
         "load1": 3.0},
        {"tool": "flagger", "router": "istio", "scenario": "a", "reaction_s": 10.0,
         "load1": 4.0},
        {"tool": "argo-rollouts", "router": "istio", "scenario": "b", "error": "boom"},
    ]  # fmt: skip
    text = render(results)
    line = next(x for x in text.splitlines() if "target -> candidate pod" in x)
    assert "0.5" in line and "10" in line and "20.0x" in line
    assert "1-min load during runs: 3.0, 4.0" in text
    assert "argo-rollouts/istio (b): boom" in text
    assert ratio(None, 1.0) == "-" and ratio(1.0, 0.0) == "-" and ratio(3.0, 2.0) == "1.5x"


def test_repeated_runs_show_their_median_and_count() -> None:
    results: list[dict[str, Any]] = [
        {"tool": "ferryman", "router": "istio", "scenario": "b", "breach_to_stable_s": v}
        for v in (0.9, 0.1, 0.5)
    ]
    results.append({"tool": "ferryman", "router": "istio", "scenario": "b", "error": "x"})
    line = next(x for x in render(results).splitlines() if "breach visible ->" in x)
    assert "0.5 [3]" in line
