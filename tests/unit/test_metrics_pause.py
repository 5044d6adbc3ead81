"""The pause-age gauge the chart's PrometheusRule alerts on: one series per paused Rollout
(its reason, its start), none once it is no longer paused or deleted."""

from __future__ import annotations

from datetime import UTC, datetime

from ferryman import metrics
from ferryman.api.rollout import PauseReason, PauseStatus

NAME = "ferryman_rollout_paused_since_timestamp_seconds"


def _series(namespace: str, rollout: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == NAME
                and labels["namespace"] == namespace
                and labels["rollout"] == rollout
            ):
                out[labels["reason"]] = sample.value
    return out


def test_paused_since_follows_the_pause_and_its_reason() -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    metrics.observe_pause("ns-p", "r", None)
    assert _series("ns-p", "r") == {}

    metrics.observe_pause("ns-p", "r", PauseStatus(reason=PauseReason.INCONCLUSIVE, since=since))
    assert _series("ns-p", "r") == {"Inconclusive": since.timestamp()}

    later = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)
    metrics.observe_pause("ns-p", "r", PauseStatus(reason=PauseReason.MANUAL, since=later))
    assert _series("ns-p", "r") == {"Manual": later.timestamp()}

    # No `since`: the series of the same reason keeps its start.
    metrics.observe_pause("ns-p", "r", PauseStatus(reason=PauseReason.MANUAL, since=None))
    assert _series("ns-p", "r") == {"Manual": later.timestamp()}

    metrics.observe_pause("ns-p", "r", None)
    assert _series("ns-p", "r") == {}


def test_a_deleted_rollout_loses_its_pause_series() -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    metrics.observe_pause("ns-q", "r", PauseStatus(reason=PauseReason.ANALYSIS_ERROR, since=since))
    metrics.observe_pause("ns-q", "other", PauseStatus(reason=PauseReason.STEP, since=since))
    metrics.forget("ns-q", "r")
    assert _series("ns-q", "r") == {}
    assert _series("ns-q", "other") == {"Step": since.timestamp()}
