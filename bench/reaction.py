"""Reaction benchmark: how fast the operator acts on a target change and on a canary
step's condition, and what a whole rollout costs in API requests, CPU and memory.

Why it exists: issue 12 §1.1. The e2e suite asserts what the operator does, never how
fast; this script measures it and prints figures, never failing on a timing.

Set-up (bench/harness.py): ferryman's CRDs, one fresh namespace, one operator subprocess
as the chart's ServiceAccount. N Rollouts (default 50), each with its own model and two
ModelVersions, replicas 1, canary over Gateway API without analysis, steps [setWeight
20, pause 2s, setWeight 60, pause 2s], all Healthy on version A. Then watches on the
namespace's Deployments, HTTPRoutes and Rollouts are opened, and all N are retargeted to
version B, one merge patch after another as fast as the client goes. Figures:

- target write -> candidate Deployment exists: from the patch's response (this process's
  monotonic clock) to the Deployment watch's first version of the candidate.
- pause elapsed -> route write: ``status.pause.since`` (the operator writes it with
  microseconds, RFC 3339) + the pause's duration, to the operator's HTTPRoute write in
  the audit log (``stageTimestamp``, microseconds, the same machine's wall clock), and to
  the route watch's receipt of the new weights.
- with ``--promote`` the pauses have no duration and the script writes the promote action
  (``ferryman.dev/action`` + a fresh ``action-id``) as soon as the Rollout watch shows a
  step pause: promote written (the patch's response, wall clock) -> the same route write
  and watch receipt.
- the operator's requests per Rollout for the whole wave (audit log, by verb and
  resource), non-2xx answers by code, operator CPU and RSS, control-plane CPU.

Run: ``python -m bench.reaction`` from the repository root; ``--rollouts N``,
``--time-limit S`` (default 300: a hard bound on every wait); ``--smoke`` is 3 Rollouts
with 1 s pauses within 60 s, for ``make test``. Exit status 0 when every Rollout
finished the wave, 2 otherwise. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    AuditLog,
    Bench,
    CpuSnapshot,
    Stamped,
    cpu_lines,
    machine,
    memory_mib,
    spread,
    to_wall,
    wall,
)
from ferryman.api.annotations import ACTION, ACTION_ID

V1, V2 = "1.0.0", "1.1.0"


def names(n: int) -> list[str]:
    return [f"m{i:04d}" for i in range(n)]


def model_version(model: str, suffix: str, version: str) -> dict[str, Any]:
    """The ModelVersion ``<model>-<suffix>`` of ``version`` the benchmarks register: an
    s3 artifact whose digest is the sha256 of the version string, a fictional image
    (only kwok makes it Ready)."""
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-{suffix}"},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {
                "uri": f"s3://models/{model}/{version}.onnx",
                "digest": "sha256:" + hashlib.sha256(version.encode()).hexdigest(),
            },
            "serving": {"image": "ghcr.io/acme/onnx-server:2.4.1"},
        },
    }


def manifests(model: str, pause_s: int | None, target: str = V1) -> list[dict[str, Any]]:
    """Two ModelVersions (``<model>-a`` 1.0.0, ``<model>-b`` 1.1.0) and the Rollout, whose
    pauses last ``pause_s`` seconds (None: until promoted)."""
    out: list[dict[str, Any]] = []
    out += [model_version(model, suffix, version) for suffix, version in (("a", V1), ("b", V2))]
    pause = {"pause": {"duration": f"{pause_s}s"} if pause_s is not None else {}}
    out.append(
        {
            "apiVersion": "ferryman.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": model},
            "spec": {
                "model": model,
                "target": {"version": target},
                "replicas": 1,
                "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}},
                "strategy": {
                    "canary": {"steps": [{"setWeight": 20}, pause, {"setWeight": 60}, pause]}
                },
                "scaleDownDelaySeconds": 0,
                "progressDeadlineSeconds": 120,
            },
        }
    )
    return out


def healthy_on(bench: Bench, version: str) -> set[str]:
    """Names of the namespace's Rollouts that are Healthy with ``version`` stable."""
    listed: Any = bench.cluster.custom.list_namespaced_custom_object(
        "ferryman.dev", "v1alpha1", bench.namespace, "rollouts"
    )
    return {
        o["metadata"]["name"]
        for o in listed["items"]
        if (o.get("status") or {}).get("phase") == "Healthy"
        and (o.get("status") or {}).get("stableVersion") == version
    }


def wait_healthy(
    bench: Bench,
    models: list[str],
    version: str,
    deadline: float,
    tick: Callable[[], None] | None = None,
) -> float:
    """Seconds until every one of ``models`` is Healthy on ``version``, calling ``tick``
    (if given) every 0.1 s meanwhile; raises TimeoutError at ``deadline`` (monotonic)."""
    start = time.monotonic()
    while True:
        if tick is not None:
            tick()
        done = healthy_on(bench, version)
        if done >= set(models):
            return time.monotonic() - start
        if time.monotonic() > deadline:
            left = len(set(models) - done)
            raise TimeoutError(f"{left} of {len(models)} not Healthy on {version}")
        time.sleep(0.25 if tick is None else 0.1)


def create_all(bench: Bench, docs: list[dict[str, Any]]) -> None:
    """Create ``docs`` in the bench's namespace: ``kubectl create`` (one POST each; an
    apply would first GET each object)."""
    bench.cluster.kubectl(
        "create", "-n", bench.namespace, "-f", "-", input=json.dumps({"kind": "List",
        "apiVersion": "v1", "items": docs}), timeout=600,
    )  # fmt: skip


def weights(route: dict[str, Any]) -> dict[str, int]:
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def pause_ends(model: str, pause_s: float, rollouts: Stamped) -> list[float]:
    """When each timed step pause of ``model`` ended, by the operator's own clock:
    ``status.pause.since`` + the duration (wall seconds)."""
    return sorted(
        {
            wall(p["since"]) + pause_s
            for _, _, o in rollouts.versions(model)
            if (p := (o.get("status") or {}).get("pause")) and p.get("reason") == "Step"
            if p.get("since")
        }
    )


def route_reactions(
    model: str, moments: list[float], routes: Stamped, writes: list[Any]
) -> tuple[list[float], list[float]]:
    """For each moment a step's condition was met (wall seconds): -> the operator's
    route write (audit ``stageTimestamp``) and -> the route watch's receipt of new
    weights (seconds; a moment whose route change was not received adds to neither)."""
    audit, watched = [], []
    route_versions = routes.versions(model)
    route_writes = sorted(at for at, _, res, nm in writes if res == "httproutes" and nm == model)
    for end in moments:
        before = [weights(o) for at, _, o in route_versions if to_wall(at) < end]
        changed = [
            to_wall(at)
            for at, _, o in route_versions
            if to_wall(at) >= end and before and weights(o) != before[-1]
        ]
        if not changed:
            continue
        watched.append(changed[0] - end)
        # The write that changed the weights: the operator re-applies an unchanged route
        # too, so it is the last write completed before the watch delivered the change
        # (250 ms of slack: the log stamps a response after it went out, and a loaded API
        # server may deliver the watch event first), not the first write after ``end``.
        made = [at for at in route_writes if end <= at <= changed[0] + 0.25]
        if made:
            audit.append(made[-1] - end)
    return audit, watched


class Promoter:
    """Writes the promote action (``ferryman.dev/action`` and a fresh ``action-id``) on
    each Rollout the Rollout watch shows in a new step pause, once per pause, and keeps
    each write's response time (wall seconds) per Rollout."""

    def __init__(self, bench: Bench, rollouts: Stamped) -> None:
        self.bench, self.rollouts = bench, rollouts
        self.done: set[tuple[str, str]] = set()
        self.at: dict[str, list[float]] = {}

    def __call__(self) -> None:
        latest = {o["metadata"]["name"]: o for _, _, o in list(self.rollouts.seen)}
        for name, obj in latest.items():
            pause = (obj.get("status") or {}).get("pause") or {}
            key = (name, str(pause.get("since")))
            if pause.get("reason") != "Step" or key in self.done:
                continue
            self.done.add(key)
            annotations = {ACTION: "promote", ACTION_ID: str(uuid.uuid4())}
            self.bench.cluster.custom.patch_namespaced_custom_object(
                "ferryman.dev", "v1alpha1", self.bench.namespace, "rollouts", name,
                {"metadata": {"annotations": annotations}},
            )  # fmt: skip
            self.at.setdefault(name, []).append(time.time())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=50, help="Rollouts retargeted at once")
    parser.add_argument("--pause", type=int, default=2, help="each pause step's duration (s)")
    parser.add_argument("--time-limit", type=float, default=300, help="hard bound (s)")
    parser.add_argument(
        "--promote",
        action="store_true",
        help="pauses until promoted: time the promote annotation -> route write instead",
    )
    parser.add_argument("--smoke", action="store_true", help="3 Rollouts, 1 s pauses, 60 s")
    args = parser.parse_args(argv)
    n, pause_s, limit = (3, 1, 60.0) if args.smoke else (args.rollouts, args.pause, args.time_limit)
    started = time.monotonic()
    deadline = started + limit
    models = names(n)
    with Bench("bench-reaction") as bench:
        audit = AuditLog()
        created = time.monotonic()
        pauses = None if args.promote else pause_s
        create_all(bench, [d for m in models for d in manifests(m, pauses)])
        wait_healthy(bench, models, V1, deadline)
        to_healthy = time.monotonic() - created
        print(f"{n} Rollouts Healthy on {V1} {to_healthy:.1f}s after creation began", flush=True)
        created_window = (to_wall(created), time.time())
        deps = Stamped(bench.cluster, bench.namespace, "deployments")
        routes = Stamped(bench.cluster, bench.namespace, "httproutes")
        rollouts = Stamped(bench.cluster, bench.namespace, "rollouts")
        promoter = Promoter(bench, rollouts) if args.promote else None
        before = CpuSnapshot.take(bench.pid)
        t0 = time.time()
        written: dict[str, float] = {}
        patch = bench.cluster.custom.patch_namespaced_custom_object
        for m in models:
            patch(
                "ferryman.dev", "v1alpha1", bench.namespace, "rollouts", m,
                {"spec": {"target": {"version": V2}}},
            )  # fmt: skip
            written[m] = time.monotonic()
        wave = written[models[-1]] - written[models[0]]
        ok = True
        try:
            took = wait_healthy(bench, models, V2, deadline, tick=promoter)
            print(f"all {n} Healthy on {V2} {took:.1f}s after the last patch", flush=True)
        except TimeoutError as e:
            ok = False
            print(f"time limit: {e}", flush=True)
        t1 = time.time()
        after = CpuSnapshot.take(bench.pid)
        rss, peak = memory_mib(bench.pid)
        for w in (deps, routes, rollouts):
            w.stop()
        wave_requests = audit.requests(t0, t1)
        create_requests = audit.requests(*created_window)
        reaction = []
        for m in models:
            seen = [at for at, _, o in deps.versions(f"{m}-b") if at >= written[m]]
            if seen:
                reaction.append(seen[0] - written[m])
        step_audit: list[float] = []
        step_watch: list[float] = []
        for m in models:
            moments = promoter.at.get(m, []) if promoter else pause_ends(m, pause_s, rollouts)
            a, w_ = route_reactions(m, moments, routes, wave_requests.writes)
            step_audit += a
            step_watch += w_
        condition = "promote written" if promoter else "pause elapsed"
        pauses_text = "pause until promoted" if promoter else f"pause {pause_s}s"
        lines = [
            f"reaction benchmark: {n} Rollouts (replicas 1, canary over Gateway API, steps "
            f"setWeight 20, {pauses_text}, setWeight 60, {pauses_text}, no analysis); "
            f"{machine()}",
            f"  {n} target patches sent in {wave:.2f}s",
            f"  target write -> candidate Deployment (watch): {spread(reaction)}",
            f"  {condition} -> route write (audit stageTimestamp): {spread(step_audit)}",
            f"  {condition} -> route weights received (watch): {spread(step_watch)}",
            f"  operator RSS {rss:.0f} MiB (peak {peak:.0f} MiB)",
            *cpu_lines(after.since(before)),
        ]
        if audit.available:
            lines.append(f"operator requests per Rollout, the whole rollout {V1} -> {V2}:")
            lines += wave_requests.lines(per=n, unit="Rollout")
            lines.append(f"operator requests per Rollout, creation to Healthy on {V1}:")
            lines += create_requests.lines(per=n, unit="Rollout")
        else:
            lines.append("operator requests: no audit log for this cluster")
        print("\n".join(lines), flush=True)
    return 0 if ok and reaction else 2


if __name__ == "__main__":
    sys.exit(main())
