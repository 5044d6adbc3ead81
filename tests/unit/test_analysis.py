"""Analysis evaluation: verdicts, counting, evidence, templates and gates (pure)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.analysis import templates
from ferryman.analysis.evaluate import QueryResult, has_evidence, judge, record_round
from ferryman.api.rollout import Analysis, Gates, Measurement, Metric, Verdict
from ferryman.plan import gates

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def metric(**thresholds: Any) -> Metric:
    return Metric.model_validate({"name": "m", "query": "q", **thresholds})


V = QueryResult


@pytest.mark.parametrize(
    ("thresholds", "value", "stable", "expected"),
    [
        ({"max": 0.01}, V(0.005), None, Verdict.SUCCESSFUL),
        ({"max": 0.01}, V(0.2), None, Verdict.FAILED),
        ({"min": 0.9}, V(0.85), None, Verdict.FAILED),
        ({"min": 0.9}, V(0.9), None, Verdict.SUCCESSFUL),  # boundary passes
        ({"max": 0.01}, V(None), None, Verdict.INCONCLUSIVE),  # empty result
        ({"max": 0.01}, V(math.nan), None, Verdict.INCONCLUSIVE),
        ({"max": 0.01}, V(math.inf), None, Verdict.INCONCLUSIVE),
        ({"max": 0.01}, V(error="unreachable"), None, Verdict.ERROR),
        ({"maxIncreaseVsStable": 0.2}, V(0.13), V(0.1), Verdict.FAILED),  # +30%
        ({"maxIncreaseVsStable": 0.2}, V(0.11), V(0.1), Verdict.SUCCESSFUL),  # +10%
        ({"maxIncreaseVsStable": 0.2, "max": 1.0}, V(0.13), V(0.1), Verdict.FAILED),  # abs passes
        ({"maxDropVsStable": 0.1}, V(0.8), V(1.0), Verdict.FAILED),
        ({"maxIncreaseVsStable": 0.2}, V(0.13), V(None), Verdict.INCONCLUSIVE),  # stable no data
        ({"maxIncreaseVsStable": 0.2}, V(0.13), V(error="boom"), Verdict.ERROR),
        ({"maxIncreaseVsStable": 0.2}, V(0.13), None, Verdict.SUCCESSFUL),  # no stable: skipped
    ],
)
def test_verdicts(
    thresholds: dict[str, Any], value: QueryResult, stable: QueryResult | None, expected: Verdict
) -> None:
    assert judge(metric(**thresholds), value, stable=stable)[0] == expected


def test_too_few_samples_is_inconclusive_never_failed() -> None:
    m = metric(max=0.01)
    assert judge(m, V(0.5), samples=V(10), min_samples=50)[0] == Verdict.INCONCLUSIVE
    assert judge(m, V(0.5), samples=V(None), min_samples=50)[0] == Verdict.INCONCLUSIVE
    assert judge(m, V(0.5), samples=V(80), min_samples=50)[0] == Verdict.FAILED
    assert judge(m, V(0.5), samples=V(error="x"), min_samples=50)[0] == Verdict.ERROR


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_value_gets_exactly_one_sane_verdict(x: float) -> None:
    verdict, _, _ = judge(metric(min=0.0, max=1.0), V(x))
    if math.isnan(x) or math.isinf(x):
        assert verdict == Verdict.INCONCLUSIVE
    elif 0.0 <= x <= 1.0:
        assert verdict == Verdict.SUCCESSFUL
    else:
        assert verdict == Verdict.FAILED


def analysis(**extra: Any) -> Analysis:
    return Analysis.model_validate(
        {
            "interval": "10s",
            "metrics": [
                {"name": "a", "query": "qa", "max": 1},
                {"name": "b", "query": "qb", "max": 1},
            ],
            **extra,
        }
    )


def round_of(verdicts: dict[str, Verdict], at: datetime) -> list[Measurement]:
    return [Measurement(metric=k, verdict=v, at=at) for k, v in verdicts.items()]


def test_counting_is_cumulative_for_failures_and_resets_on_success() -> None:
    a = analysis()
    s = None
    for k in range(3):
        s = record_round(
            s,
            a,
            round_of({"a": Verdict.FAILED, "b": Verdict.INCONCLUSIVE}, T0),
            at=T0 + timedelta(seconds=10 * k),
            interval=timedelta(seconds=10),
        )
    assert s is not None and s.failures == {"a": 3}
    assert s.inconclusive == 0  # a round with a failure is not "inconclusive"
    s = record_round(
        s,
        a,
        round_of({"a": Verdict.SUCCESSFUL, "b": Verdict.INCONCLUSIVE}, T0),
        at=T0,
        interval=timedelta(seconds=10),
    )
    assert s.inconclusive == 1
    s = record_round(
        s,
        a,
        round_of({"a": Verdict.ERROR, "b": Verdict.SUCCESSFUL}, T0),
        at=T0,
        interval=timedelta(seconds=10),
    )
    assert s.consecutive_errors == 1
    s = record_round(
        s,
        a,
        round_of({"a": Verdict.SUCCESSFUL, "b": Verdict.SUCCESSFUL}, T0),
        at=T0 + timedelta(seconds=5),
        interval=timedelta(seconds=10),
    )
    assert (s.inconclusive, s.consecutive_errors, s.failures) == (0, 0, {"a": 3})
    assert s.next_measurement_at == T0 + timedelta(seconds=15)


def test_measurements_are_bounded() -> None:
    s = None
    for k in range(100):
        s = record_round(
            s,
            analysis(),
            round_of({"a": Verdict.SUCCESSFUL}, T0),
            at=T0 + timedelta(seconds=k),
            interval=timedelta(seconds=1),
        )
    assert s is not None and len(s.measurements or []) == 50


def test_evidence_needs_every_metric_successful_since_the_weight_change() -> None:
    a = analysis()
    s = record_round(
        None,
        a,
        round_of({"a": Verdict.SUCCESSFUL, "b": Verdict.SUCCESSFUL}, T0),
        at=T0,
        interval=timedelta(seconds=10),
    )
    assert has_evidence(s, a, since=T0)
    assert not has_evidence(s, a, since=T0 + timedelta(seconds=1))
    s = record_round(
        None,
        a,
        round_of({"a": Verdict.SUCCESSFUL, "b": Verdict.INCONCLUSIVE}, T0),
        at=T0,
        interval=timedelta(seconds=10),
    )
    assert not has_evidence(s, a, since=T0)


def test_templates_render_and_report_unknown_variables() -> None:
    q = 'sum(rate(x{model="{{model}}",version="{{ version }}"}[{{interval}}]))'
    assert (
        templates.render(q, {"model": "fraud", "version": "1.3.0", "interval": "30s"})
        == 'sum(rate(x{model="fraud",version="1.3.0"}[30s]))'
    )
    assert templates.unknown_variables([q, "{{stableVersion}} {{modle}}"]) == ["modle"]


GATES = Gates.model_validate(
    {"offlineMetrics": [{"name": "auc", "min": 0.9, "maxDropVsStable": 0.005}]}
)


@pytest.mark.parametrize(
    ("candidate", "stable", "reason"),
    [
        ({"auc": 0.941}, {"auc": 0.940}, None),
        ({"auc": 0.936}, {"auc": 0.941}, None),  # exactly the allowed drop
        ({"auc": 0.93}, {"auc": 0.941}, "below stable"),
        ({"auc": 0.85}, None, "below the minimum 0.9"),
        ({}, {"auc": 0.941}, "missing from ModelVersion"),
        ({"auc": 0.95}, {}, "missing from the stable version"),
    ],
)
def test_offline_gates(
    candidate: dict[str, float], stable: dict[str, float] | None, reason: str | None
) -> None:
    got = gates.check(
        GATES,
        candidate,
        stable,
        candidate_version="1.3.0",
        stable_version="1.2.0" if stable is not None else None,
    )
    assert (got is None) if reason is None else (got is not None and reason in got)
