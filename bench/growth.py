"""Growth benchmark: how the operator's cost grows with the number of Rollouts it holds,
with a py-spy profile of the largest point.

Why it exists: issue 12 §1.5. One point (bench/scale.py) says what 1,000 Rollouts cost;
the curve says what each added Rollout costs, and the profile says where the operator's
time goes, which is what explains a missed target.

Set-up: bench/scale.py's (``Stack``: Prometheus, the simulated data plane for every
Rollout, the operator as the chart's ServiceAccount; the same Rollouts, 5-step canaries
with analysis every 10 s). The Rollouts are grown, never recreated: at each point N
(default 10, 100, 300, 1,000) the missing ones are created (parallel ``kubectl create``)
and all N waited on until Healthy; then a **load** window of 3 minutes in which K = min(N
/ 3, 100) Rollouts are kept progressing (each one that finishes is replaced by the next
idle one while a whole rollout still fits in the window; the running ones then finish),
and, once the operator has made no request for 5 s, an **idle** window of 2 minutes.
Each window's figures: step and analysis lateness (as bench/scale.py defines them), RSS
(peak and steady), operator and control-plane CPU s/min, operator requests/min (audit).

At the largest point the operator is profiled during the load window with py-spy (PyPI
``py-spy``, the ``bench`` extra of pyproject.toml; ``py-spy record --pid`` of the
operator subprocess, non-blocking sampling, idle stacks left out; root or ptrace rights
needed): a flame graph (SVG) and the collapsed stacks are written outside git, to
``${FERRYMAN_CACHE:-~/.cache/ferryman}/bench/growth-<time>/`` (``--out``), and the top
frames (self and inclusive share of the samples) and modules are printed.

Run: ``python -m bench.growth`` (about 27 minutes) from the repository root;
``--points 10,100,300,1000``, ``--load-minutes``, ``--idle-minutes``, ``--no-profile``,
``--time-limit S`` (default 1800: a hard bound on every wait and window); ``--smoke`` is
points 1 and 2, bench/scale.py's smoke rollout (one weight step), one wave and a 1 s
idle window each, no profile, then bench/scale.py's report of the last load window (one
run keeps both scripts working in ``make test``). Exit status 0 when every point was
measured, 2 otherwise. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import machine, percentile, table
from bench.reaction import names
from bench.scale import (
    SMOKE,
    Driver,
    Shape,
    Stack,
    Window,
    commit,
    report,
    wait_all_healthy,
)


@dataclass
class Point:
    n: int
    k: int
    created_s: float
    healthy_s: float
    load: Window
    idle: Window


class Profiler:
    """``py-spy record`` of process ``pid``: two samplers at once (non-blocking, so the
    operator is never paused), one writing a flame graph (SVG), one the collapsed stacks
    (``raw``) that ``top`` reads; stopped with SIGINT, which makes py-spy write its file."""

    def __init__(self, binary: str, pid: int, out: Path, seconds: float, rate: int = 50):
        out.mkdir(parents=True, exist_ok=True)
        self.svg, self.raw = out / "operator-flamegraph.svg", out / "operator-stacks.txt"
        common = [
            binary, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
            "--function", "--duration", str(int(seconds) + 60),
        ]  # fmt: skip
        self.log = (out / "py-spy.log").open("ab")
        self.procs = [
            subprocess.Popen(
                [*common, "--format", fmt, "--output", str(path)],
                stdout=self.log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            for fmt, path in (("flamegraph", self.svg), ("raw", self.raw))
        ]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.log.close()


def top(raw: Path, count: int = 12) -> list[str]:
    """The collapsed stacks of ``raw`` (py-spy ``--format raw``: ``frame;frame;... n`` per
    line, outermost first) as text: total samples, then the ``count`` frames with the most
    samples on top of the stack (self) and in the stack at all (inclusive), and the
    modules by self samples, each as a share of all samples."""
    self_n: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        frames = stack.split(";")
        total += n
        self_n[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
        leaf = frames[-1]
        where = leaf[leaf.rfind("(") + 1 :].split(":")[0] if "(" in leaf else leaf
        modules[where] += n
    if not total:
        return ["  no samples"]
    out = [f"  {total} samples"]
    for title, counter in (("self", self_n), ("inclusive", incl), ("self, by file", modules)):
        out.append(f"  top frames, {title}:")
        out += [f"    {n / total:6.1%}  {frame}" for frame, n in counter.most_common(count)]
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("FERRYMAN_CACHE", "~/.cache/ferryman")).expanduser() / "bench"


def fmt_spread(values: list[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{percentile(values, p):.2f}" for p in (50, 99)) + f" / {max(values):.2f}"


def summary(points: list[Point]) -> str:
    rows = []
    for p in points:
        lo, idle = p.load, p.idle
        rows.append(
            [
                str(p.n),
                str(p.k),
                f"{lo.load:.1f}",
                f"{p.created_s:.0f} / {p.healthy_s:.0f}",
                f"{lo.started}",
                f"{lo.rss_peak:.0f} / {lo.rss_steady:.0f} / {idle.rss_steady:.0f}",
                f"{lo.per_min('operator'):.2f} / {idle.per_min('operator'):.2f}",
                f"{lo.per_min('control plane'):.2f} / {idle.per_min('control plane'):.2f}",
                f"{lo.requests.total / (lo.seconds / 60):.0f} / "
                f"{idle.requests.total / (idle.seconds / 60):.1f}",
                fmt_spread(lo.step_watch),
                fmt_spread(lo.late_measure),
            ]
        )
    header = [
        "N",
        "K",
        "load avg",
        "create / Healthy s",
        "started",
        "RSS MiB peak / steady / idle",
        "op CPU s/min load / idle",
        "CP CPU s/min load / idle",
        "op req/min load / idle",
        "step late s p50/p99/max",
        "analysis late s p50/p99/max",
    ]
    return table(rows, header)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="10,100,300,1000", help="Rollout counts, growing")
    parser.add_argument("--load-minutes", type=float, default=3)
    parser.add_argument("--idle-minutes", type=float, default=2)
    parser.add_argument("--clients", type=int, default=6, help="parallel kubectl creators")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy at the largest")
    parser.add_argument("--out", type=Path, help="profile directory (default: the cache's)")
    parser.add_argument("--time-limit", type=float, default=1800, help="hard bound (s)")
    parser.add_argument("--smoke", action="store_true", help="points 1 and 2, one wave each")
    args = parser.parse_args(argv)
    # SIGTERM (a stopped job) exits through the context managers: the operator,
    # Prometheus and the namespace are cleaned up as on any other exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        points, load_s, idle_s, quiet, limit = [1, 2], 0.0, 1.0, 1.0, 90.0
        shape, profile = SMOKE, False
    else:
        points = sorted(int(p) for p in args.points.split(","))
        load_s, idle_s, quiet = args.load_minutes * 60, args.idle_minutes * 60, 5.0
        limit, shape, profile = args.time_limit, Shape(), not args.no_profile
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if profile and not os.access(spy, os.X_OK):
        print("py-spy not installed: pip install -e '.[bench]' (or --no-profile)", flush=True)
        return 2
    out = args.out or cache_dir() / time.strftime("growth-%Y%m%dT%H%M%S")
    label = commit()
    started = time.monotonic()
    deadline = started + limit
    models = names(max(points))
    measured: list[Point] = []
    profile_lines: list[str] = []
    with Stack("bench-growth") as stack:
        versions: dict[str, str] = {}
        have = 0
        for n in points:
            t0 = time.monotonic()
            stack.create(models[have:n], shape, args.clients)
            created = time.monotonic() - t0
            try:
                ready = wait_all_healthy(stack.latest, models[:n], deadline)
            except TimeoutError as e:
                print(f"N={n}: time limit: {e}", flush=True)
                break
            healthy = time.monotonic() - t0
            if len(ready) < n:
                print(f"N={n}: {n - len(ready)} Rollouts ended other than Healthy", flush=True)
            have = n
            k = max(1, min(n // 3, 100))
            driver = Driver(stack.bench, stack.latest, ready, k, stack.bench.pid, versions)
            # New rollouts start while a whole one still fits in the load window.
            starting = max(0.0, load_s - shape.expected_s())
            bound = min(deadline, time.monotonic() + max(load_s, 1.0) + 120)
            profiler: Profiler | None = None

            def begin(n: int = n) -> None:
                nonlocal profiler
                if profile and n == points[-1]:
                    profiler = Profiler(spy, stack.bench.pid, out, load_s)

            load = stack.window(f"N={n} load", driver, shape, starting, bound, models[:n], begin)
            if profiler is not None:
                profiler.stop()
                profile_lines = [
                    f"py-spy profile of the operator, N={n} load window "
                    f"(flame graph {profiler.svg}, stacks {profiler.raw}):",
                    *top(profiler.raw),
                ]
            stack.audit.wait_quiet(quiet, min(deadline, time.monotonic() + 60))
            idle = stack.window(f"N={n} idle", None, shape, idle_s, deadline, models[:n])
            point = Point(n, k, created, healthy, load, idle)
            measured.append(point)
            print(f"--- N={n}, K={k}: created in {created:.1f}s, Healthy {healthy:.1f}s")
            print("\n".join(load.lines(stack.audit.available)), flush=True)
            print("\n".join(idle.lines(stack.audit.available)), flush=True)
            for line in driver.stuck[:5]:
                print(f"  did not promote: {line}", flush=True)
    print(
        f"growth benchmark at commit {label}: points {points}; {shape.describe()}; load "
        f"{load_s:.0f}s (starts until {max(0.0, load_s - shape.expected_s()):.0f}s), idle "
        f"{idle_s:.0f}s; whole run {time.monotonic() - started:.0f}s; {machine()}",
        flush=True,
    )
    print(summary(measured), flush=True)
    if profile_lines:
        print("\n".join(profile_lines), flush=True)
    if args.smoke and measured:
        # The scale benchmark's report of the last load window: bench/scale.py's figures
        # come from the same code (Stack, Driver, lateness, Window), so one smoke run keeps
        # both scripts working (make test); `make bench-smoke` runs scale's own as well.
        last = measured[-1]
        audited = stack.audit.available
        print("\n".join(report(label, last.n, last.k, 0.0, shape, last.load, audited)))
    return 0 if len(measured) == len(points) else 2


if __name__ == "__main__":
    sys.exit(main())
