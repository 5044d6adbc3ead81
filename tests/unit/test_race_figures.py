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

from bench.race_figures import (  # noqa: E402
    ratio,
    reactions,
    render,
    replica_splits,
    route_weights,
    share,
)
from bench.race_tools import ArgoRollouts, Ferryman  # noqa: E402


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


def _workload(name: str, replicas: int, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"replicas": replicas}}


def test_plain_services_split_is_each_sides_replicas_over_the_workloads_events() -> None:
    """The "route" of plain Services: ferryman's Deployments by their version label,
    Argo Rollouts' ReplicaSets by the pod template's; other objects' workloads ignored; a
    deleted workload leaves the split; the rollback reads as the candidate at 0%."""
    fm = Ferryman()
    v = "ferryman.dev/version"
    events = [
        (1.0, "LISTED", _workload("a0-a", 5, **{"ferryman.dev/rollout": "a0", v: "1.0.0"})),
        (1.5, "ADDED", _workload("x-a", 5, **{"ferryman.dev/rollout": "x", v: "1.0.0"})),
        (2.0, "ADDED", _workload("a0-b", 1, **{"ferryman.dev/rollout": "a0", v: "1.1.0"})),
        (3.0, "MODIFIED", _workload("a0-b", 2, **{"ferryman.dev/rollout": "a0", v: "1.1.0"})),
        (4.0, "DELETED", _workload("a0-b", 2, **{"ferryman.dev/rollout": "a0", v: "1.1.0"})),
    ]
    splits = replica_splits(events, lambda o: fm.workload_side(o, "a0"))
    weights = [(at, route_weights(o)) for at, _, o in splits]
    assert weights == [
        (1.0, {"a0-a": 5}),
        (2.0, {"a0-a": 5, "a0-b": 1}),
        (3.0, {"a0-a": 5, "a0-b": 2}),
        (4.0, {"a0-a": 5}),
    ]
    assert [share(w, fm.candidate_suffix) for _, w in weights] == [0.0, 100 / 6, 200 / 7, 0.0]
    assert reactions([2.5], weights) == [0.5]
    argo = ArgoRollouts(Path("/nonexistent"))
    rs = [
        (1.0, "ADDED", _workload("b0-6f7d", 4, app="b0", **{"race/version": "v1"})),
        (1.1, "ADDED", _workload("b0-59c8", 1, app="b0", **{"race/version": "v2"})),
        (1.2, "ADDED", _workload("c0-59c8", 1, app="c0", **{"race/version": "v2"})),
        (2.0, "MODIFIED", _workload("b0-59c8", 0, app="b0", **{"race/version": "v2"})),
    ]
    split = replica_splits(rs, lambda o: argo.workload_side(o, "b0"))
    assert [route_weights(o) for _, _, o in split] == [
        {"b0-stable": 4},
        {"b0-stable": 4, "b0-canary": 1},
        {"b0-stable": 4, "b0-canary": 0},
    ]
    assert argo.side_versions("b0") == {"b0-canary": "canary", "b0-stable": "stable"}
