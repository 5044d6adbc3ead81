"""The prediction-distribution analysis metric kind: its verdicts (the same Inconclusive
rules as other metrics), the provider's reading of a by-``le`` vector, and one round of
``handlers.analysis.measure`` with a fake provider: both versions' histograms are asked
for with the same query, and the measurement carries the PSI."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from cases.api_cases import rollout
from ferryman.analysis import provider
from ferryman.analysis.evaluate import BucketsResult, QueryResult, judge_distribution
from ferryman.api.rollout import Metric, Rollout, Verdict
from ferryman.handlers import analysis as handler
from ferryman.plan import evidence

T0 = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
BOUNDS = ("0.25", "0.5", "0.75", "+Inf")
QUERY = 'sum by (le) (increase(model_prediction_bucket{version="{{version}}"}[{{interval}}]))'


def metric(**limits: Any) -> Metric:
    return Metric.model_validate(
        {"name": "predictions", "query": QUERY, "distribution": {"minCount": 100, **limits}}
    )


def buckets(*cumulative: float) -> BucketsResult:
    return BucketsResult(buckets=dict(zip(BOUNDS, cumulative, strict=True)))


SAME = buckets(250, 500, 750, 1000)
# Half the candidate's mass moved up one bucket: per-bucket (125, 250, 375, 250) vs 250 each.
SHIFTED = buckets(125, 375, 750, 1000)


def smoothed_psi(c: list[float], s: list[float]) -> float:
    """By hand: add 0.5 to each bucket, normalise, sum (c - s) ln(c / s)."""
    cn = [(x + 0.5) / (sum(c) + 0.5 * len(c)) for x in c]
    sn = [(x + 0.5) / (sum(s) + 0.5 * len(s)) for x in s]
    return sum((a - b) * math.log(a / b) for a, b in zip(cn, sn, strict=True))


def test_a_shift_beyond_max_psi_fails_with_the_psi_in_the_message() -> None:
    expected = smoothed_psi([125, 250, 375, 250], [250, 250, 250, 250])
    verdict, threshold, message, value = judge_distribution(
        metric(maxPSI=0.05), SHIFTED, stable=SAME
    )
    assert verdict == Verdict.FAILED
    assert value == pytest.approx(expected)
    assert threshold == "PSI <= 0.05"
    assert message.startswith(f"PSI {expected:.4g} ") and "PSI > 0.05" in message
    ok = judge_distribution(metric(maxPSI=expected + 0.01), SHIFTED, stable=SAME)
    assert ok[0] == Verdict.SUCCESSFUL and f"PSI {expected:.4g}" in ok[2]


def test_js_distance_limit_alone_reports_the_distance() -> None:
    verdict, threshold, message, value = judge_distribution(
        metric(maxJSDistance=0.05), SHIFTED, stable=SAME
    )
    assert verdict == Verdict.FAILED and threshold == "JS distance <= 0.05"
    assert value is not None and 0.05 < value < 1 and "JS distance > 0.05" in message
    assert judge_distribution(metric(maxJSDistance=0.5), SHIFTED, stable=SAME)[0] == (
        Verdict.SUCCESSFUL
    )


@pytest.mark.parametrize(
    ("candidate", "stable", "why"),
    [
        (buckets(10, 20, 30, 40), SAME, "40 candidate samples, 100 needed"),
        (SAME, buckets(1, 2, 3, 4), "4 stable samples, 100 needed"),
        (BucketsResult(buckets={}), SAME, "no histogram for the candidate"),
        (SAME, BucketsResult(buckets={}), "no histogram for the stable"),
        (
            BucketsResult(buckets={"1": 500.0, "+Inf": 1000.0}),
            SAME,
            "bucket bounds differ",
        ),
    ],
)
def test_too_few_samples_or_mismatched_buckets_are_inconclusive_never_failed(
    candidate: BucketsResult, stable: BucketsResult, why: str
) -> None:
    verdict, _, message, value = judge_distribution(metric(maxPSI=0.0), candidate, stable=stable)
    assert verdict == Verdict.INCONCLUSIVE and why in message and value is None


def test_errors_and_the_analysis_wide_sample_minimum() -> None:
    m = metric(maxPSI=0.1)
    assert judge_distribution(m, BucketsResult(error="boom"), stable=SAME)[0] == Verdict.ERROR
    stable_error = judge_distribution(m, SAME, stable=BucketsResult(error="boom"))
    assert stable_error[0] == Verdict.ERROR and stable_error[2] == "stable: boom"
    few = judge_distribution(m, SHIFTED, stable=SAME, samples=QueryResult(5), min_samples=10)
    assert few[0] == Verdict.INCONCLUSIVE and few[2] == "5 samples"
    # No stable version serving (first rollout, baking): nothing to compare, said so.
    alone = judge_distribution(m, SHIFTED, stable=None)
    assert alone[0] == Verdict.SUCCESSFUL and "not compared" in alone[2]


def vector(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1.0, v]} for m, v in series],
        },
    }


def test_provider_reads_one_series_per_le() -> None:
    body = vector(({"le": "0.5"}, "3"), ({"le": "+Inf"}, "7.5"))
    assert provider._buckets(body) == BucketsResult(buckets={"0.5": 3.0, "+Inf": 7.5})
    assert provider._buckets(vector()) == BucketsResult(buckets={})


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (vector(({"le": "1", "version": "v2"}, "3")), "aggregate it to one series per le"),
        (vector(({"le": "1"}, "3"), ({"le": "1"}, "4")), "le=1 twice"),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}, "vector"),
    ],
)
def test_provider_refuses_what_is_not_one_histogram(body: dict[str, Any], why: str) -> None:
    result = provider._buckets(body)
    assert result.error is not None and why in result.error


class FakeProvider:
    """Answers histogram queries by the version named in them; plain queries fail the
    test (a distribution metric must not use them)."""

    def __init__(self, by_version: dict[str, BucketsResult]) -> None:
        self.by_version = by_version
        self.asked: list[str] = []

    async def query(self, promql: str) -> QueryResult:
        raise AssertionError(f"unexpected plain query {promql}")

    async def query_buckets(self, promql: str) -> BucketsResult:
        self.asked.append(promql)
        version = promql.split('version="')[1].split('"')[0]
        return self.by_version[version]

    async def healthy(self) -> bool:
        return True


def test_one_round_measures_both_versions_and_records_the_psi() -> None:
    manifest = rollout()
    manifest["metadata"]["namespace"] = "ml"
    manifest["spec"]["analysis"]["metrics"] = [
        {"name": "predictions", "query": QUERY, "distribution": {"maxPSI": 0.05}}
    ]
    ro = Rollout.model_validate(manifest)
    fake = FakeProvider({"1.3.0": SHIFTED, "1.2.0": SAME})
    target = evidence.AnalysisTarget(version="1.3.0", stable="1.2.0", relative=True)
    status = asyncio.run(handler.measure(ro, target, fake, {}, T0))
    assert fake.asked == [
        'sum by (le) (increase(model_prediction_bucket{version="1.3.0"}[30s]))',
        'sum by (le) (increase(model_prediction_bucket{version="1.2.0"}[30s]))',
    ]
    (m,) = status.measurements or []
    expected = smoothed_psi([125, 250, 375, 250], [250, 250, 250, 250])
    assert m.verdict == Verdict.FAILED and m.value == pytest.approx(expected)
    assert f"PSI {expected:.4g}" in m.message and m.threshold == "PSI <= 0.05"
    assert status.failures == {"predictions": 1}


def test_the_operator_imports_scipy_only_when_a_distribution_is_judged() -> None:
    """scipy costs ~40 MB and half a second at startup; an operator whose Rollouts have no
    distribution metric never loads it (evaluate imports ``distribution`` lazily)."""
    code = (
        "import sys, ferryman.main, ferryman.handlers.analysis\n"
        "from ferryman.analysis import evaluate\n"
        "from ferryman.api.rollout import Metric\n"
        "print('scipy' in sys.modules, 'numpy' in sys.modules)\n"
        "m = Metric.model_validate("
        "{'name': 'p', 'query': 'q', 'distribution': {'maxPSI': 0.1, 'minCount': 0}})\n"
        "b = evaluate.BucketsResult(buckets={'1': 1.0, '+Inf': 2.0})\n"
        "evaluate.judge_distribution(m, b, stable=b)\n"
        "print('scipy.spatial.distance' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "False", "True"]
