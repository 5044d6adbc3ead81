"""Pure arithmetic of the side-by-side race (bench/race.py): which route write answered
which step condition, and the peer/ferryman ratios of the report.

Why it exists: the race compares three controllers that write different routing objects
(Istio VirtualService, Gateway API HTTPRoute) with different backend names; the pairing of
"condition met" moments with route changes, and the ratio table, are the same for all and
are kept apart from the cluster code so they can be unit-tested (tests/bench_unit).
"""

from __future__ import annotations

from typing import Any

from bench.harness import percentile, table

SPLIT = "ReplicaSplit"  # bench/race.py's view of plain Services' workloads as a route


def route_weights(obj: dict[str, Any]) -> dict[str, int]:
    """Backend name -> weight of the first weighted rule of an HTTPRoute
    (``spec.rules[0].backendRefs``) or an Istio VirtualService (``spec.http[0].route``:
    ``destination.host``); a backend without a weight counts 1 (HTTPRoute) or 100
    (VirtualService, a lone destination); for a ``SPLIT`` (plain Services), each side's
    replicas (``spec.replicas``). Empty for any other object."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == SPLIT:
        return {side: int(n) for side, n in (spec.get("replicas") or {}).items()}
    if spec.get("rules"):
        refs = spec["rules"][0].get("backendRefs") or []
        return {b["name"]: int(b.get("weight", 1)) for b in refs}
    if spec.get("http"):
        routes = spec["http"][0].get("route") or []
        return {r["destination"]["host"]: int(r.get("weight", 100)) for r in routes}
    return {}


def replica_splits(
    events: list[tuple[float, str, dict[str, Any]]], side_of: Any
) -> list[tuple[float, str, dict[str, Any]]]:
    """Plain Services, where the split is the replica ratio: watch ``events`` of
    workloads (receive time, event type, object) -> a ``SPLIT`` after each event of a
    workload that ``side_of(obj)`` puts on a side (a backend name; None: not this
    object's), its weights each side's summed ``spec.replicas``; a deleted workload
    leaves the split. The type of every version is "MODIFIED" (a deletion changes the
    split, it is not the route's)."""
    held: dict[str, tuple[str, int]] = {}  # workload -> (side, replicas)
    out: list[tuple[float, str, dict[str, Any]]] = []
    for at, kind, obj in events:
        side = side_of(obj)
        if side is None:
            continue
        workload = obj["metadata"]["name"]
        if kind == "DELETED":
            held.pop(workload, None)
        else:
            held[workload] = (side, int((obj.get("spec") or {}).get("replicas") or 0))
        split: dict[str, int] = {}
        for s, n in held.values():
            split[s] = split.get(s, 0) + n
        out.append((at, "MODIFIED", {"kind": SPLIT, "spec": {"replicas": split}}))
    return out


def share(weights: dict[str, int], backend_suffix: str) -> float:
    """Percent of the weight on the backends whose name ends with ``backend_suffix``
    (0.0 when the weights are empty or all zero)."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return 100.0 * sum(w for n, w in weights.items() if n.endswith(backend_suffix)) / total


def reactions(
    moments: list[float], changes: list[tuple[float, dict[str, int]]]
) -> list[float | None]:
    """For each moment a step condition was met (seconds, one clock), the delay to the
    first route change received at or after it: ``changes`` are (receive time, weights)
    in receive order, and a change is a version whose weights differ from the version
    before it. None for a moment no change followed. Raises nothing; unsorted moments
    are fine."""
    changed: list[float] = []
    previous: dict[str, int] | None = None
    for at, weights in changes:
        if previous is not None and weights != previous:
            changed.append(at)
        previous = weights
    out: list[float | None] = []
    for moment in moments:
        later = [at for at in changed if at >= moment]
        out.append(min(later) - moment if later else None)
    return out


def summary(values: list[float]) -> dict[str, float]:
    """n, p50, p99 and max of ``values`` (seconds); {"n": 0} when empty."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def ratio(peer: float | None, ferryman: float | None) -> str:
    """peer / ferryman as ``"12.3x"``; ``"-"`` when either is missing or ferryman's is 0."""
    if peer is None or ferryman is None or ferryman <= 0:
        return "-"
    return f"{peer / ferryman:.1f}x"


# (scenario, label, key path) of each figure in the table; lower is better for all.
FIGURES = (
    ("a", "target -> candidate pod (s)", ("reaction_s",)),
    ("a", "promote -> route received, p50 (s)", ("step_watch", "p50")),
    ("a", "promote -> route received, max (s)", ("step_watch", "max")),
    ("a", "promote -> route write (audit), p50 (s)", ("step_audit", "p50")),
    ("a", "target -> fully promoted (s)", ("total_s",)),
    ("a", "API requests, whole rollout", ("requests",)),
    ("a", "controller CPU (s)", ("cpu_s",)),
    ("a", "controller RSS (MiB)", ("rss_mib",)),
    ("b", "breach visible -> route 100% stable (s)", ("breach_to_stable_s",)),
    ("b", "target -> breach visible (s)", ("breach_after_target_s",)),
    ("b", "API requests", ("requests",)),
    ("c", "wave: target -> candidate pod p50 (s)", ("reaction", "p50")),
    ("c", "wave: target -> candidate pod p99 (s)", ("reaction", "p99")),
    ("c", "wave: target -> first controller write p50 (s)", ("first_write", "p50")),
    ("c", "wave: target -> first controller write p99 (s)", ("first_write", "p99")),
    ("c", "wave: API requests per object", ("requests_per_object",)),
    ("c", "wave: controller CPU (s)", ("cpu_s",)),
    ("c", "wave: controller RSS (MiB)", ("rss_mib",)),
)


def figure(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The number at ``path`` in one scenario's result; None if absent."""
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def median_figure(runs: list[dict[str, Any]], path: tuple[str, ...]) -> float | None:
    """The median (the lower middle one for an even count) of the figure at ``path`` over
    the runs that have it; None if none does."""
    values = sorted(v for r in runs if (v := figure(r, path)) is not None)
    return values[(len(values) - 1) // 2] if values else None


def render(results: list[dict[str, Any]]) -> str:
    """The race's results (bench/race.py ``--json``) as one text table per router: each
    figure for each tool (the median over repeated runs, their count in brackets when
    more than one), with ratio peer/ferryman on the same router; errors listed after it.
    Missing figures read "-"."""
    by: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["tool"], r["router"], r["scenario"]), []).append(r)
    tools = sorted(dict.fromkeys(r["tool"] for r in results), key=lambda t: t != "ferryman")
    routers = list(dict.fromkeys(r["router"] for r in results))
    lines: list[str] = []
    for router in routers:
        here = [t for t in tools if any(k[:2] == (t, router) for k in by)]
        header = ["figure"]
        for t in here:
            header += [t] if t == "ferryman" else [t, f"{t}/ferryman"]
        rows: list[list[str]] = []
        for sc, label, path in FIGURES:
            base = median_figure(by.get(("ferryman", router, sc), []), path)
            row = [f"({sc}) {label}"]
            for t in here:
                runs = by.get((t, router, sc), [])
                v = median_figure(runs, path)
                n = sum(1 for r in runs if figure(r, path) is not None)
                row.append("-" if v is None else f"{v:.3g}" + (f" [{n}]" if n > 1 else ""))
                if t != "ferryman":
                    row.append(ratio(v, base))
            rows.append(row)
        loads = sorted(
            {f"{r['load1']:.1f}" for r in results if r["router"] == router and "load1" in r}
        )
        lines += [f"router {router} (1-min load during runs: {', '.join(loads) or '-'})"]
        lines += [table(rows, header), ""]
    for r in results:
        if "error" in r:
            lines.append(f"{r['tool']}/{r['router']} ({r['scenario']}): {r['error']}")
    return "\n".join(lines)
