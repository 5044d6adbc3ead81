#!/usr/bin/env python3
"""``make demo``: the README's main command, ferryman's story end to end.

1. Starts the local control plane (building its binaries on the first run), a real
   Prometheus, the simulated data plane (it turns route weights into request metrics)
   and the operator (``python -m ferryman``), all on 127.0.0.1.
2. Registers three versions of a fraud-detection model and serves 1.2.0.
3. Canary of 1.3.0: at 50% its error rate jumps to 25%; ferryman sees it in Prometheus
   and returns all traffic to 1.2.0 by itself.
4. Canary of 1.3.1, a good version: promoted through every step.
5. Prints a timeline and tears everything down (a cluster that was already running is
   left running).

Set-up, narration and teardown are ``harness.demo_stage`` (shared with ``make demo-ab``,
hack/demo_ab.py, the second act), on the test harness's Prometheus, data plane and
operator process, so the demos and the e2e tests exercise the same machinery.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "hack" / "cluster"), str(ROOT / "tests")]

from harness.dataplane import DataPlane  # noqa: E402
from harness.demo_stage import Narrator, Stage, model_version  # noqa: E402

NS, MODEL = "ferryman-demo", "fraud-detector"
NARRATOR = Narrator()
say = NARRATOR.say

SEL = 'namespace="{{namespace}}",version="{{version}}"'
ERRORS = (
    f'(sum(rate(model_requests_total{{{SEL},code="500"}}[3s])) or vector(0)) '
    f"/ sum(rate(model_requests_total{{{SEL}}}[3s]))"
)


ROLLOUT: dict[str, Any] = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": MODEL},
    "spec": {
        "model": MODEL,
        "target": {"version": "1.2.0"},
        "replicas": 4,
        "trafficRouting": {
            "gatewayAPI": {
                "parentRefs": [{"name": "ml-gateway"}],
                "hostnames": ["fraud.acme.example"],
            }
        },
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": "4s"}},
                    {"setWeight": 50},
                    {"pause": {"duration": "10s"}},
                ]
            }
        },
        "gates": {"offlineMetrics": [{"name": "auc", "min": 0.9, "maxDropVsStable": 0.01}]},
        "analysis": {
            "provider": "default",
            "interval": "2s",
            "failureLimit": 1,
            "inconclusiveLimit": 5,
            "consecutiveErrorLimit": 5,
            "metrics": [{"name": "error-rate", "query": ERRORS, "max": 0.05}],
        },
        "scaleDownDelaySeconds": 5,
        "progressDeadlineSeconds": 60,
    },
}


def watch_rollout(
    stage: Stage,
    until: str,
    dataplane: DataPlane | None = None,
    go_bad_at: int | None = None,
    limit_s: float = 120,
) -> dict[str, Any]:
    """Print each change of phase/weights/step until the phase is ``until``."""
    last = None
    deadline = time.monotonic() + limit_s
    broke = False
    while time.monotonic() < deadline:
        st = stage.get(MODEL).get("status") or {}
        w = st.get("weights") or {}
        view = (st.get("phase"), w.get("stable"), w.get("candidate"), st.get("currentStep"))
        if view != last:
            last = view
            say(
                f"{st.get('phase', '-'):<11} stable {st.get('stableVersion', '-')} "
                f"{w.get('stable', 100):>3}% | candidate {st.get('candidateVersion') or '-'} "
                f"{w.get('candidate', 0):>3}% | step {st.get('currentStep', '-')} | "
                f"{st.get('message', '')}",
                mark=False,
            )
        if go_bad_at is not None and not broke and w.get("candidate") == go_bad_at and dataplane:
            dataplane.set(st["candidateVersion"], error_rate=0.25)
            broke = True
            say(
                f"!! {st['candidateVersion']} starts failing 25% of its requests at "
                f"{go_bad_at}% traffic"
            )
        if st.get("phase") == until and st.get("candidateVersion") is None:
            return st
        time.sleep(0.2)
    raise SystemExit(f"demo: Rollout did not reach {until} in {limit_s}s")


def main() -> int:
    with Stage(NARRATOR, NS) as stage:
        dataplane = stage.dataplane(rollout=MODEL, model=MODEL)
        say(f"simulated data plane on {dataplane.address}: 200 requests/s split by the route")
        stage.cluster.apply(
            [
                model_version(MODEL, "1.2.0", {"auc": 0.936}),
                model_version(MODEL, "1.3.0", {"auc": 0.941}),
                model_version(MODEL, "1.3.1", {"auc": 0.943}),
            ],
            namespace=NS,
        )
        say("registered ModelVersions 1.2.0, 1.3.0 and 1.3.1 of fraud-detector")
        stage.cluster.apply(ROLLOUT, namespace=NS)
        say("Rollout fraud-detector targets 1.2.0 (the first version goes straight to stable)")
        watch_rollout(stage, "Healthy")
        say("1.2.0 is stable and serves 100%")

        say("GitOps changes the target to 1.3.0: canary 10% -> 4s -> 50% -> 10s -> 100%")
        stage.retarget(MODEL, "1.3.0")
        st = watch_rollout(stage, "RolledBack", dataplane=dataplane, go_bad_at=50)
        say(f"ROLLED BACK automatically: {st['history'][-1]['reason'][:160]}")

        say("GitOps changes the target to 1.3.1, a good version")
        stage.retarget(MODEL, "1.3.1")
        watch_rollout(stage, "Healthy")
        say("PROMOTED: 1.3.1 is stable and serves 100%")

        print("\n" + stage.ferryman_status(MODEL))
        NARRATOR.print_timeline()
    print(f"demo finished in {NARRATOR.elapsed():.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
