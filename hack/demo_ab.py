#!/usr/bin/env python3
"""``make demo-ab``: the demo's second act, model experiments (issue 16), end to end.

On the stage ``make demo`` uses (``harness.demo_stage``: the local control plane, a real
Prometheus, the operator as a process with the chart's RBAC, simulated data planes):

A. An A/B test. ``recommender`` 2.0.0 is stable; 2.1.0 is its candidate under
   ``strategy.abTest``: 30% of users, picked by the trailing hex digits of their
   ``x-user-id`` header, see 2.1.0 (sticky: the route ferryman writes is a regular
   expression over the id, and the simulated users, ``harness.abusers``, are routed by it
   with RE2). Users convert at a true rate of 10% on 2.0.0 and 13% on 2.1.0, counted as
   expected values (no random draws), so the run is deterministic up to scrape timing.
   Every analysis round the verdict of the sequential test is printed as ``kubectl
   ferryman status`` renders it (``ferryman.cli.render.experiment_lines``): per variant
   users, successes and rate, the difference with its always-valid confidence interval,
   the p-value, the e-value and the users still needed, until the candidate wins and
   ferryman promotes it.
B. A shadow that drifts. ``fraud-detector`` 1.2.0 is stable; 1.3.0 gets a mirrored copy
   of every request (``strategy.shadow``) and its prediction histogram is compared with
   the stable's every round (``distribution`` metric: PSI and Jensen-Shannon distance,
   ``harness.predictions``). It predicts alike for a few rounds, then its scores move one
   bucket up: the PSI, printed each round, crosses ``maxPSI`` 0.2 and ferryman stops the
   shadow with the PSI in the reason; 1.2.0 never stopped serving.

Then it prints both Rollouts as ``kubectl ferryman status`` shows them, a timeline, and
tears everything down as ``make demo`` does (a control plane that was already running is
left running). ``--smoke`` plays the same story with 1-second analysis rounds, 50% of
users, a larger true effect (10% against 15%) and the drift after the first round: what
``tests/e2e/test_demo_ab.py`` runs. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "hack" / "cluster"), str(ROOT / "tests")]

from ferryman.api.rollout import Rollout  # noqa: E402
from ferryman.cli import render  # noqa: E402
from harness.abusers import ABUsers  # noqa: E402
from harness.demo_stage import Narrator, Stage, model_version  # noqa: E402
from harness.predictions import Predictions  # noqa: E402

NS = "ferryman-demo-ab"
RELEASE = "ferryman-demo"  # the operator's own identity (harness.demo_stage.Stage)
REC, FRAUD = "recommender", "fraud-detector"
NARRATOR = Narrator()
say = NARRATOR.say

SEL = 'namespace="{{namespace}}",model="{{model}}",version="{{version}}"'
ERRORS = (
    f'(sum(rate(model_requests_total{{{SEL},code="500"}}[3s])) or vector(0)) '
    f"/ sum(rate(model_requests_total{{{SEL}}}[3s]))"
)
SAMPLES = f"sum(increase(model_requests_total{{{SEL}}}[3s]))"
HISTOGRAM = f"sum by (le) (increase(model_prediction_bucket{{{SEL}}}[4s]))"
MAX_PSI = 0.2
INDENT = " " * 11  # under the message of a "[t+ 12.3s] " line
SHOWN: dict[str, tuple[Any, ...]] = {}  # Rollout -> the (phase, versions) printed last


@dataclass(frozen=True)
class Tempo:
    """How fast the story is played: the demo's, or the test's ``--smoke``."""

    interval: str  # analysis interval of both Rollouts
    percent: int  # percent of users on the A/B candidate
    users_per_s: float
    rates: tuple[float, float]  # true conversion rate of 2.0.0 and of 2.1.0
    mde: float  # minimum detectable effect of the A/B test (absolute)
    drift_after: int  # successful PSI rounds of the shadow before its predictions drift


DEMO = Tempo(
    interval="2s", percent=30, users_per_s=300, rates=(0.10, 0.13), mde=0.03, drift_after=3
)
SMOKE = Tempo(
    interval="1s", percent=50, users_per_s=300, rates=(0.10, 0.15), mde=0.05, drift_after=1
)


def ab_rollout(tempo: Tempo) -> dict[str, Any]:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": REC},
        "spec": {
            "model": REC,
            "target": {"version": "2.0.0"},
            "replicas": 4,
            "trafficRouting": {
                "gatewayAPI": {
                    "parentRefs": [{"name": "ml-gateway"}],
                    "hostnames": ["shop.acme.example"],
                }
            },
            "strategy": {
                "abTest": {
                    "users": {
                        "percentOfUsers": {
                            "percent": tempo.percent,
                            "userId": {"header": "x-user-id"},
                        }
                    },
                    "objective": {
                        "successes": f"sum(app_converted_users_total{{{SEL}}})",
                        "trials": f"sum(app_exposed_users_total{{{SEL}}})",
                        "direction": "HigherIsBetter",
                        "mde": tempo.mde,
                    },
                    "duration": "120s",
                }
            },
            "analysis": {
                "provider": "default",
                "interval": tempo.interval,
                "failureLimit": 1,
                "inconclusiveLimit": 10,  # the first rounds may find no samples yet
                "consecutiveErrorLimit": 3,
                "minSamples": {"query": SAMPLES, "min": 5},
                "metrics": [{"name": "error-rate", "query": ERRORS, "max": 0.05}],
            },
            "scaleDownDelaySeconds": 5,
            "progressDeadlineSeconds": 60,
        },
    }


def shadow_rollout(tempo: Tempo) -> dict[str, Any]:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": FRAUD},
        "spec": {
            "model": FRAUD,
            "target": {"version": "1.2.0"},
            "replicas": 2,
            "trafficRouting": {
                "gatewayAPI": {
                    "parentRefs": [{"name": "ml-gateway"}],
                    "hostnames": ["fraud.acme.example"],
                }
            },
            "strategy": {"shadow": {"mirrorPercent": 100, "duration": "60s", "then": "promote"}},
            "analysis": {
                "provider": "default",
                "interval": tempo.interval,
                "failureLimit": 0,
                "inconclusiveLimit": 10,  # the first rounds may find no samples yet
                "consecutiveErrorLimit": 2,
                "minSamples": {"query": SAMPLES, "min": 10},
                "metrics": [
                    {
                        "name": "predictions",
                        "query": HISTOGRAM,
                        "distribution": {"maxPSI": MAX_PSI, "maxJSDistance": 0.3, "minCount": 200},
                    }
                ],
            },
            "scaleDownDelaySeconds": 5,
            "progressDeadlineSeconds": 60,
        },
    }


def watch(
    stage: Stage,
    name: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    each: Callable[[Rollout], None] | None = None,
    limit_s: float = 120,
) -> dict[str, Any]:
    """Poll Rollout ``name`` every 0.5 s for at most ``limit_s``: print each change of
    phase or versions (after calling ``each`` with the parsed Rollout), and return its status
    once ``done(status)``. Exits the demo (code 1) when the time is up."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        obj = stage.get(name)
        st = obj.get("status") or {}
        view = (st.get("phase"), st.get("stableVersion"), st.get("candidateVersion"))
        if each is not None and st:
            each(Rollout.model_validate(obj))
        if view != SHOWN.get(name) and st:
            SHOWN[name] = view
            say(
                f"{name}: {st.get('phase', '-'):<11} stable {st.get('stableVersion', '-')} | "
                f"candidate {st.get('candidateVersion') or '-'} | {st.get('message', '')}",
                mark=False,
            )
        if done(st):
            return st
        time.sleep(0.5)
    raise SystemExit(f"demo-ab: Rollout {name} did not get there in {limit_s:.0f}s")


def serves(version: str) -> Callable[[dict[str, Any]], bool]:
    def check(st: dict[str, Any]) -> bool:
        return (
            st.get("phase") == "Healthy"
            and st.get("stableVersion") == version
            and not st.get("candidateVersion")
        )

    return check


def act_a(stage: Stage, tempo: Tempo, users: ABUsers) -> None:
    stable_rate, candidate_rate = tempo.rates
    users.rate.update({"2.0.0": stable_rate, "2.1.0": candidate_rate})
    say(
        f"ACT A. GitOps changes {REC}'s target to 2.1.0: an A/B test on {tempo.percent}% of "
        f"users by x-user-id (true conversion: 2.0.0 {stable_rate:.0%}, 2.1.0 "
        f"{candidate_rate:.0%}; MDE {tempo.mde:.0%}, alpha 5%, a look every {tempo.interval})"
    )
    stage.retarget(REC, "2.1.0")
    seen = {"looks": 0}

    def each(rollout: Rollout) -> None:
        e = rollout.status.experiment
        if e is None or e.looks == seen["looks"]:
            return
        seen["looks"] = e.looks
        say(f"{REC}: A/B look {e.looks}", mark=False)
        for line in render.experiment_lines(e, rollout.spec, last=True):
            print(INDENT + line, flush=True)
        if e.outcome == "CandidateWins":
            say(f"CANDIDATE WINS at look {e.looks}: {e.message}")
        elif e.outcome in ("StableWins", "NoDifference"):
            raise SystemExit(f"demo-ab: the A/B test ended {e.outcome}: {e.message}")

    def done(st: dict[str, Any]) -> bool:
        if st.get("phase") == "RolledBack":
            raise SystemExit(f"demo-ab: {REC} rolled back: {st.get('message')}")
        return serves("2.1.0")(st)

    watch(stage, REC, done, each=each)
    say("PROMOTED: 2.1.0 won the A/B test, is stable and serves 100%")


def act_b(stage: Stage, tempo: Tempo, predictions: Predictions) -> None:
    say(
        f"ACT B. GitOps changes {FRAUD}'s target to 1.3.0: a shadow (every request "
        f"mirrored), its prediction histogram against 1.2.0's each {tempo.interval} "
        f"(maxPSI {MAX_PSI})"
    )
    since = datetime.now(UTC) - timedelta(seconds=1)
    stage.retarget(FRAUD, "1.3.0")
    printed: set[tuple[str, str]] = set()
    ok = {"rounds": 0}

    def each(rollout: Rollout) -> None:
        a = rollout.status.analysis
        for m in a.measurements if a is not None and a.measurements else []:
            key = (str(m.at), m.metric)
            if m.metric != "predictions" or m.at < since or key in printed:
                continue
            printed.add(key)
            say(f"{FRAUD}: {render.measurement_line(m)}", mark=False)
            print(f"{INDENT}{m.message}", flush=True)
            if m.verdict.value == "Successful":
                ok["rounds"] += 1
            if ok["rounds"] == tempo.drift_after and not predictions.shift:
                predictions.shift["1.3.0"] = 1.0
                say("!! 1.3.0's predictions drift: its scores move one bucket up")

    def done(st: dict[str, Any]) -> bool:
        if serves("1.3.0")(st):
            raise SystemExit(f"demo-ab: the drifting shadow was promoted: {st.get('message')}")
        return bool(st.get("phase") == "RolledBack")

    st = watch(stage, FRAUD, done, each=each)
    reason = st["history"][-1]["reason"].split("; query:")[0]  # the query was shown above
    say(f"STOPPED: the shadow of 1.3.0 ended, 1.2.0 serving throughout: {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="the fast variant the e2e test runs (docstring)"
    )
    tempo = SMOKE if parser.parse_args(argv).smoke else DEMO
    with Stage(NARRATOR, NS, release=RELEASE) as stage:
        rec_dp = stage.dataplane(rollout=REC, model=REC)
        users = ABUsers(rec_dp, users_per_s=tempo.users_per_s).start()
        fraud_dp = stage.dataplane(rollout=FRAUD, model=FRAUD)
        predictions = Predictions(fraud_dp).start()
        try:
            say(
                f"simulated data planes: {REC} with {tempo.users_per_s:.0f} new users/s "
                f"(ids in x-user-id, routed with RE2 by the route ferryman writes), "
                f"{FRAUD} with 200 requests/s and prediction histograms"
            )
            stage.cluster.apply(
                [
                    model_version(REC, "2.0.0", {"ndcg": 0.412}),
                    model_version(REC, "2.1.0", {"ndcg": 0.418}),
                    model_version(FRAUD, "1.2.0", {"auc": 0.936}),
                    model_version(FRAUD, "1.3.0", {"auc": 0.941}),
                ],
                namespace=NS,
            )
            stage.cluster.apply([ab_rollout(tempo), shadow_rollout(tempo)], namespace=NS)
            say(f"registered {REC} 2.0.0 and 2.1.0, {FRAUD} 1.2.0 and 1.3.0; both stable first")
            watch(stage, REC, serves("2.0.0"))
            watch(stage, FRAUD, serves("1.2.0"))

            act_a(stage, tempo, users)
            users.stop()
            stage.drop(rec_dp)  # its part is over: less load for act B
            act_b(stage, tempo, predictions)

            for name in (REC, FRAUD):
                print("\n" + stage.ferryman_status(name))
            NARRATOR.print_timeline()
        finally:
            users.stop()
            predictions.stop()
    print(f"demo-ab finished in {NARRATOR.elapsed():.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
