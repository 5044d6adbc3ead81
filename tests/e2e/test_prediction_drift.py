"""The prediction-distribution metric end to end (issue 16 §2): the simulated data plane
exports prediction histograms per version (``harness.predictions``), the real Prometheus
scrapes them, the real operator compares candidate and stable in a shadow. A candidate
whose predictions shift beyond ``maxPSI`` is rolled back with the PSI in the reason; one
within the bound is promoted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e import rollouts as r
from e2e.test_analysis import SAMPLES, analysing_operator, settings_file, stable_on
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess
from harness.predictions import Predictions

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]
__all__ = ["analysing_operator", "settings_file"]  # fixtures used here

SEL = 'namespace="{{namespace}}",version="{{version}}"'
HISTOGRAM = f"sum by (le) (increase(model_prediction_bucket{{{SEL}}}[4s]))"
MAX_PSI = 0.2


@pytest.fixture
def predictions(dataplane: DataPlane) -> Iterator[Predictions]:
    p = Predictions(dataplane).start()
    yield p
    p.stop()


def analysis() -> dict[str, Any]:
    return {
        "provider": "default",
        "interval": "2s",
        "failureLimit": 0,
        "inconclusiveLimit": 5,
        "consecutiveErrorLimit": 2,
        "minSamples": {"query": SAMPLES, "min": 10},
        "metrics": [
            {
                "name": "predictions",
                "query": HISTOGRAM,
                "distribution": {"maxPSI": MAX_PSI, "maxJSDistance": 0.3, "minCount": 200},
            }
        ],
    }


def shadow(then: str = "promote") -> dict[str, Any]:
    return {"shadow": {"mirrorPercent": 100, "duration": "8s", "then": then}}


def predictions_measurements(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    analysis_status = r.status(cluster, ns).get("analysis") or {}
    return [m for m in analysis_status.get("measurements") or [] if m["metric"] == "predictions"]


def test_drifting_shadow_is_stopped_with_the_psi_and_a_faithful_one_is_promoted(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    predictions: Predictions,
    analysing_operator: OperatorProcess,
) -> None:
    """One Rollout, two candidates (one test: a stable rollout costs ~10 s): 1.1.0 predicts
    one bucket higher than 1.0.0 (PSI ~0.43) and is rolled back with the PSI in the
    reason; then 1.2.0, a tenth of a bucket off (PSI ~0.002), is promoted."""
    cluster.apply(r.versions("1.0.0", "1.1.0", "1.2.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", analysis=analysis(), strategy=shadow()), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    predictions.shift.update({"1.1.0": 1.0, "1.2.0": 0.1})
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=90,
        message="drifting shadow rolled back",
    )
    status = r.status(cluster, namespace)
    assert "PSI" in status.get("message", ""), status.get("message")
    failed = [m for m in predictions_measurements(cluster, namespace) if m["verdict"] == "Failed"]
    assert failed, predictions_measurements(cluster, namespace)
    assert failed[-1]["value"] > MAX_PSI and failed[-1]["threshold"].startswith("PSI <= 0.2")
    assert "PSI > 0.2" in failed[-1]["message"]
    assert status.get("stableVersion") == "1.0.0"

    r.retarget(cluster, namespace, "1.2.0")
    stable_on(cluster, namespace, "1.2.0")
    ok = [m for m in predictions_measurements(cluster, namespace) if m["verdict"] == "Successful"]
    assert ok and all("PSI" in m["message"] for m in ok), ok
    assert all(m["value"] <= MAX_PSI for m in ok)
