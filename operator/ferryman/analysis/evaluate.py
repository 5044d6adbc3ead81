"""Pure evaluation of measurements (no I/O): verdicts, counts and the evidence rule.

Verdicts (DESIGN.md §2): an unreachable provider, an HTTP error or a bad query is an
``Error``; an empty result, NaN, Inf or fewer samples than ``minSamples`` is
``Inconclusive`` (no data is never a failure and never a success, unlike peers that roll
back low-traffic models for nothing); otherwise absolute (``min``/``max``) and relative
(``maxIncreaseVsStable``/``maxDropVsStable`` against the same query for the stable
version, measured at the same time) thresholds decide ``Failed`` or ``Successful``. A
stable value that is itself inconclusive makes a relative check inconclusive.

A distribution metric (``metric.distribution``) compares two histograms instead of
judging one value (``judge_distribution``; the numbers come from ``distribution``): its
PSI and Jensen-Shannon distance against ``maxPSI`` / ``maxJSDistance``; too few samples,
different buckets or an empty window are ``Inconclusive``, never ``Failed``.

Counting (Argo Rollouts' semantics): failures per metric, cumulative for the candidate;
``failures > failureLimit`` rolls back. A round with an inconclusive measurement (and no
failure) adds to ``inconclusive``, a round with an error to ``consecutiveErrors``; a fully
successful round resets both, which is how a paused rollout resumes by itself.

Idempotence across restarts: a round's counts and the next due time are written in the
same status write as its measurements, so a round whose write was lost is simply
measured again and counted once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from ferryman.api.rollout import (
    MAX_MEASUREMENTS,
    Analysis,
    AnalysisStatus,
    Measurement,
    Metric,
    Verdict,
)


@dataclass(frozen=True)
class BucketsResult:
    """A histogram query's answer: cumulative counts by ``le`` label (``{"0.5": 12.0,
    "+Inf": 30.0}``; empty when the query matched nothing), or an error."""

    buckets: dict[str, float] | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueryResult:
    """What a provider answered: a value, nothing (``value`` None), or an error."""

    value: float | None = None
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.error is None and self.value is not None and math.isfinite(self.value)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def judge(
    metric: Metric,
    result: QueryResult,
    *,
    stable: QueryResult | None = None,
    samples: QueryResult | None = None,
    min_samples: float | None = None,
    relative: bool = True,
) -> tuple[Verdict, str, str]:
    """(verdict, threshold text, message) for one measurement of ``metric``."""
    if result.error is not None:
        return Verdict.ERROR, "", result.error
    too_few = _too_few_samples(samples, min_samples)
    if too_few is not None:
        return too_few
    if not result.usable:
        return Verdict.INCONCLUSIVE, "", "no data (empty, NaN or Inf)"
    value = result.value
    assert value is not None
    checks: list[str] = []
    if metric.min is not None:
        checks.append(f"min {_fmt(metric.min)}")
        if value < metric.min:
            return Verdict.FAILED, f"min {_fmt(metric.min)}", f"{_fmt(value)} < {_fmt(metric.min)}"
    if metric.max is not None:
        checks.append(f"max {_fmt(metric.max)}")
        if value > metric.max:
            return Verdict.FAILED, f"max {_fmt(metric.max)}", f"{_fmt(value)} > {_fmt(metric.max)}"
    wants_relative = (
        metric.max_increase_vs_stable is not None or metric.max_drop_vs_stable is not None
    )
    if wants_relative and relative and stable is not None:
        if stable.error is not None:
            return Verdict.ERROR, "", f"stable: {stable.error}"
        if not stable.usable:
            return Verdict.INCONCLUSIVE, "relative to stable", "no data for the stable version"
        base = stable.value
        assert base is not None
        if metric.max_increase_vs_stable is not None:
            limit = base * (1 + metric.max_increase_vs_stable)
            text = f"<= stable x {_fmt(1 + metric.max_increase_vs_stable)} ({_fmt(limit)})"
            checks.append(text)
            if value > limit:
                return Verdict.FAILED, text, f"{_fmt(value)} > {_fmt(limit)} (stable {_fmt(base)})"
        if metric.max_drop_vs_stable is not None:
            limit = base * (1 - metric.max_drop_vs_stable)
            text = f">= stable x {_fmt(1 - metric.max_drop_vs_stable)} ({_fmt(limit)})"
            checks.append(text)
            if value < limit:
                return Verdict.FAILED, text, f"{_fmt(value)} < {_fmt(limit)} (stable {_fmt(base)})"
    return Verdict.SUCCESSFUL, ", ".join(checks), _fmt(value)


def _too_few_samples(
    samples: QueryResult | None, min_samples: float | None
) -> tuple[Verdict, str, str] | None:
    """The analysis-wide ``minSamples`` rule: an Error or Inconclusive verdict, or None."""
    if samples is None or min_samples is None:
        return None
    if samples.error is not None:
        return Verdict.ERROR, "", f"samples query: {samples.error}"
    if not samples.usable or (samples.value or 0) < min_samples:
        n = _fmt(samples.value) if samples.usable and samples.value is not None else "no"
        return Verdict.INCONCLUSIVE, f"samples >= {_fmt(min_samples)}", f"{n} samples"
    return None


def record_round(
    status: AnalysisStatus | None,
    analysis: Analysis,
    measurements: list[Measurement],
    *,
    at: datetime,
    interval: timedelta,
) -> AnalysisStatus:
    """Counters and bounded history after one round of measurements taken at ``at``."""
    s = status.model_copy(deep=True) if status else AnalysisStatus()
    failures = dict(s.failures or {})
    verdicts = {m.verdict for m in measurements}
    for m in measurements:
        if m.verdict == Verdict.FAILED:
            failures[m.metric] = failures.get(m.metric, 0) + 1
    # Counts of metrics no longer in the spec (renamed, removed) are dropped: they can
    # no longer be judged, and the map stays within its bound.
    names = {metric.name for metric in analysis.metrics}
    failures = {k: v for k, v in failures.items() if k in names}
    s.failures = failures or None
    if Verdict.ERROR in verdicts:
        s.consecutive_errors += 1
    else:
        s.consecutive_errors = 0
    if Verdict.INCONCLUSIVE in verdicts and Verdict.FAILED not in verdicts:
        s.inconclusive += 1
    elif verdicts <= {Verdict.SUCCESSFUL}:
        s.inconclusive = 0
    s.measurements = [*(s.measurements or []), *measurements][-MAX_MEASUREMENTS:]
    s.next_measurement_at = at + interval
    return s


def failed_metric(status: AnalysisStatus | None, analysis: Analysis) -> Measurement | None:
    """The latest failed measurement of a metric over its failure limit, if any."""
    if status is None or not status.failures:
        return None
    names = {m.name for m in analysis.metrics}
    for metric, count in status.failures.items():
        if metric in names and count > analysis.failure_limit:
            for m in reversed(status.measurements or []):
                if m.metric == metric and m.verdict == Verdict.FAILED:
                    return m
            return Measurement(metric=metric, verdict=Verdict.FAILED, at=datetime.min)
    return None


def has_evidence(status: AnalysisStatus | None, analysis: Analysis, since: datetime | None) -> bool:
    """Every metric has a Successful measurement taken at or after ``since``."""
    if status is None:
        return False
    ok = {
        m.metric
        for m in status.measurements or []
        if m.verdict == Verdict.SUCCESSFUL and (since is None or m.at >= since)
    }
    return all(metric.name in ok for metric in analysis.metrics)


def judge_distribution(
    metric: Metric,
    candidate: BucketsResult,
    *,
    stable: BucketsResult | None,
    samples: QueryResult | None = None,
    min_samples: float | None = None,
) -> tuple[Verdict, str, str, float | None]:
    """(verdict, threshold text, message, value) for one distribution measurement: the
    value is the PSI (or, with only ``maxJSDistance``, the JS distance); the message
    carries both. ``stable`` None means there is no stable version receiving traffic to
    compare with (a first rollout, or baking): nothing to judge, so ``Successful`` with a
    message saying so, as relative thresholds are skipped then."""
    # scipy is imported only by Rollouts that use the metric kind (~40 MB, 0.5 s).
    from ferryman.analysis import distribution

    spec = metric.distribution
    assert spec is not None
    limits = [
        *([f"PSI <= {_fmt(spec.max_psi)}"] if spec.max_psi is not None else []),
        *(
            [f"JS distance <= {_fmt(spec.max_js_distance)}"]
            if spec.max_js_distance is not None
            else []
        ),
    ]
    threshold = ", ".join(limits)
    if candidate.error is not None:
        return Verdict.ERROR, "", candidate.error, None
    too_few = _too_few_samples(samples, min_samples)
    if too_few is not None:
        return (*too_few, None)
    if stable is None:
        return Verdict.SUCCESSFUL, threshold, "not compared: no stable version serving", None
    if stable.error is not None:
        return Verdict.ERROR, "", f"stable: {stable.error}", None
    try:
        c = distribution.Histogram.from_buckets(candidate.buckets or {})
        s = distribution.Histogram.from_buckets(stable.buckets or {})
        result = distribution.compare(c, s, min_count=spec.min_count)
    except distribution.Incomparable as e:
        side = "" if candidate.buckets and stable.buckets else _empty_side(candidate, stable)
        return Verdict.INCONCLUSIVE, threshold, f"{side}{e}", None
    value = result.psi if spec.max_psi is not None else result.js_distance
    described = result.describe()
    if spec.max_psi is not None and result.psi > spec.max_psi:
        return Verdict.FAILED, threshold, f"{described}: PSI > {_fmt(spec.max_psi)}", value
    if spec.max_js_distance is not None and result.js_distance > spec.max_js_distance:
        limit = _fmt(spec.max_js_distance)
        return Verdict.FAILED, threshold, f"{described}: JS distance > {limit}", value
    return Verdict.SUCCESSFUL, threshold, described, value


def _empty_side(candidate: BucketsResult, stable: BucketsResult) -> str:
    empty = [n for n, r in (("candidate", candidate), ("stable", stable)) if not r.buckets]
    return f"no histogram for the {' and the '.join(empty)}: "
