"""Idle benchmark: what the operator costs while nothing changes.

Why it exists: issue 12 §1.4. An operator that polls, re-lists or re-applies on a timer
burns the API server's CPU for every Rollout it holds even when no rollout is under way;
this script measures that cost and prints figures, never failing on one.

Set-up (bench/harness.py): ferryman's CRDs, one fresh namespace, one operator subprocess
as the chart's ServiceAccount. N Rollouts (default 300; the issue's figure is 1,000),
each with its own model and one ModelVersion, replicas 1, canary over Gateway API, are
created and waited on until all are Healthy (the time that takes is printed). After a
settle period and once the operator has made no request for 10 s (the audit log; at
1,000 Rollouts it catches up for ~30 s after the last Healthy), an idle window of M
minutes (default 2) in which nothing is written by this script. Figures: the operator's
CPU seconds per minute and RSS, its API requests per minute by verb and resource (audit
log; watch re-establishments are expected), the control plane's CPU per minute.

Run: ``python -m bench.idle`` from the repository root; ``--rollouts N``, ``--minutes M``,
``--time-limit S`` (default 600: bounds the wait for Healthy); ``--smoke`` is 3 Rollouts
and a 3 s window, for ``make test``; ``--leader-election`` runs the operator holding its
Lease (the chart's default), so the window counts the renewals too. Exit status 0 when
all went Healthy, 2 otherwise. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import AuditLog, Bench, CpuSnapshot, cpu_lines, machine, memory_mib
from bench.reaction import V1, create_all, manifests, names, wait_healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=300, help="Healthy Rollouts held")
    parser.add_argument("--minutes", type=float, default=2, help="the idle window")
    parser.add_argument("--settle", type=float, default=15, help="seconds before the window")
    parser.add_argument(
        "--quiet", type=float, default=10, help="then wait until no request for this long (s)"
    )
    parser.add_argument("--time-limit", type=float, default=600, help="bound on set-up (s)")
    parser.add_argument("--smoke", action="store_true", help="3 Rollouts, a 3 s window")
    parser.add_argument(
        "--leader-election",
        action="store_true",
        help="the operator holds the Lease (default timings, as the chart): its renewals "
        "are counted in the window",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        n, window, settle, quiet, limit = 3, 3.0, 0.0, 1.0, 60.0
    else:
        n, window, limit = args.rollouts, args.minutes * 60, args.time_limit
        settle, quiet = args.settle, args.quiet
    models = names(n)
    le = {"leaderElection": {"enabled": True}} if args.leader_election else {}
    with Bench("bench-idle", settings=le) as bench:
        audit = AuditLog()
        # Only the Rollout and its stable ModelVersion: an idle Rollout needs no candidate.
        docs = [
            d for m in models for d in manifests(m, 2) if not d["metadata"]["name"].endswith("-b")
        ]
        start = time.monotonic()
        create_all(bench, docs)
        applied = time.monotonic() - start
        try:
            wait_healthy(bench, models, V1, start + limit)
        except TimeoutError as e:
            print(f"time limit: {e}", flush=True)
            return 2
        took = time.monotonic() - start
        created_rss = memory_mib(bench.pid)[0]
        print(
            f"{n} Rollouts created in {applied:.1f}s (kubectl create), all Healthy "
            f"{took:.1f}s after creation began",
            flush=True,
        )
        time.sleep(settle)
        # The operator may still be catching up after the last Healthy (at 1,000 Rollouts
        # it re-applied objects for ~30 s): the window starts once it has been quiet.
        healthy_at = time.monotonic()
        if audit.wait_quiet(quiet, start + limit):
            after_healthy = time.monotonic() - healthy_at + settle
            print(
                f"operator quiet for {quiet:.0f}s, {after_healthy:.1f}s after all were Healthy",
                flush=True,
            )
        else:
            print(f"operator never quiet for {quiet:.0f}s within the time limit", flush=True)
        before = CpuSnapshot.take(bench.pid)
        t0 = time.time()
        time.sleep(window)
        t1 = time.time()
        after = CpuSnapshot.take(bench.pid)
        rss, peak = memory_mib(bench.pid)
        minutes = window / 60
        lines = [
            f"idle benchmark: {n} Healthy Rollouts, {window:.0f}s idle window after "
            f"{settle:.0f}s settling and {quiet:.0f}s without an operator request"
            f"{' (Lease requests aside)' if args.leader_election else ''}; "
            f"leader election {'on' if args.leader_election else 'off'}; {machine()}",
            f"  operator RSS {rss:.0f} MiB (peak {peak:.0f} MiB; {created_rss:.0f} MiB when "
            f"all were Healthy)",
            *cpu_lines(after.since(before)),
        ]
        if audit.available:
            lines.append("operator requests in the idle window, per minute:")
            lines += audit.requests(t0, t1).lines(per=minutes, unit="minute")
        else:
            lines.append("operator requests: no audit log for this cluster")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
