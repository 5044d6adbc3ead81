"""``spec.gates``, ``spec.analysis`` and ``spec.bake``: the offline checks before any
traffic moves, the Prometheus metrics and limits measured while it moves, and the
analysis after promotion.
"""

from __future__ import annotations

from pydantic import Field

from ferryman.api.approval import ApprovalGate
from ferryman.api.common import (
    ApiModel,
    cel,
    dns_label_rule,
    duration_rule,
    matches,
    model_rules,
    rules,
)
from ferryman.api.rollout_limits import MAX_GATES, MAX_METRIC_NAME, MAX_METRIC_QUERY, MAX_METRICS

_ONE_THRESHOLD = (
    "has(self.min) || has(self.max) || has(self.maxIncreaseVsStable) || has(self.maxDropVsStable)"
)


class OfflineGate(ApiModel):
    """A check of the candidate's offline metrics (ModelVersion spec.metrics)."""

    model_config = model_rules(
        cel(
            "has(self.min) || has(self.max) || has(self.maxDropVsStable)",
            "an offline gate needs at least one of min, max or maxDropVsStable",
        )
    )

    name: str = Field(min_length=1, max_length=63, description="Metric name, e.g. auc.")
    min: float | None = Field(None, description="Lowest acceptable value.")
    max: float | None = Field(None, description="Highest acceptable value.")
    max_drop_vs_stable: float | None = Field(
        None, ge=0, description="Largest acceptable drop below the stable version's value."
    )


class Gates(ApiModel):
    """Checked before any traffic moves; a failing candidate is Rejected. Approvals
    (``approvals``) pause the rollout instead, at the point they name."""

    offline_metrics: list[OfflineGate] | None = Field(
        None, max_length=MAX_GATES, description="Offline metric gates."
    )
    approvals: ApprovalGate | None = Field(
        None, description="Approvals (ModelApprovals) the candidate needs (docs/approvals.md)."
    )


class MinSamples(ApiModel):
    """A measurement with fewer samples than this is Inconclusive, never a verdict."""

    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL returning the number of samples (templated like metric queries).",
    )
    min: float = Field(ge=0, description="Fewest samples for a measurement to count.")


class PredictionDistribution(ApiModel):
    """Compares the candidate's prediction histogram with the stable's over the same
    window (analysis.distribution: Population Stability Index and Jensen-Shannon distance;
    docs/experiments.md). The metric's query returns one histogram's cumulative bucket
    counts by ``le`` and is rendered once per version."""

    model_config = model_rules(
        cel(
            "has(self.maxPSI) || has(self.maxJSDistance)",
            "distribution needs maxPSI or maxJSDistance",
        )
    )

    max_psi: float | None = Field(
        None,
        alias="maxPSI",
        ge=0,
        description="Fails when the Population Stability Index of the candidate against "
        "the stable exceeds this (0.1 small shift, 0.25 large; empty buckets smoothed by "
        "adding 0.5 to every bucket).",
    )
    max_js_distance: float | None = Field(
        None,
        alias="maxJSDistance",
        ge=0,
        le=1,
        description="Fails when the Jensen-Shannon distance (base 2, in [0, 1]) exceeds this.",
    )
    min_count: float = Field(
        100,
        ge=0,
        description="Fewest samples (the +Inf bucket's count) in each histogram for a "
        "measurement to count; fewer is Inconclusive.",
    )


class Metric(ApiModel):
    """A Prometheus query and its thresholds, or a histogram compared (distribution)."""

    model_config = model_rules(
        cel(
            f"{_ONE_THRESHOLD} || has(self.distribution)",
            "metric needs at least one threshold: min, max, maxIncreaseVsStable or "
            "maxDropVsStable (or a distribution)",
        ),
        cel(
            f"!has(self.distribution) || !({_ONE_THRESHOLD})",
            "a distribution metric takes maxPSI/maxJSDistance, not min, max, "
            "maxIncreaseVsStable or maxDropVsStable",
        ),
    )

    name: str = Field(
        max_length=MAX_METRIC_NAME,
        description="Metric name (a DNS-1123 label), e.g. error-rate.",
        json_schema_extra=rules(dns_label_rule("metric name")),
    )
    query: str = Field(
        max_length=MAX_METRIC_QUERY,
        description="PromQL instant query. Variables: {{model}}, {{version}}, {{namespace}}, "
        "{{workload}}, {{stableVersion}}, {{interval}}.",
        json_schema_extra=rules(cel(matches(r"\S"), "metric query must not be empty")),
    )
    min: float | None = Field(None, description="Fails below this value.")
    max: float | None = Field(None, description="Fails above this value.")
    max_increase_vs_stable: float | None = Field(
        None,
        ge=0,
        description="Fails when above the stable version's value (same query) by more than "
        "this fraction, e.g. 0.2 = 20%.",
    )
    max_drop_vs_stable: float | None = Field(
        None,
        ge=0,
        description="Fails when below the stable version's value by more than this fraction.",
    )
    distribution: PredictionDistribution | None = Field(
        None,
        description="Makes this a prediction-distribution metric: the query returns "
        "histogram buckets by le, e.g. sum by (le) (increase(model_prediction_bucket"
        '{version="{{version}}"}[{{interval}}])), measured for the candidate and the stable.',
    )


class Analysis(ApiModel):
    """Prometheus analysis while traffic moves and during bake."""

    model_config = model_rules(
        cel(
            "!(has(self.provider) && has(self.address))",
            "analysis takes a provider name or an inline address, not both",
        ),
        cel(
            "self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))",
            "analysis metric names must be unique",
        ),
    )

    provider: str | None = Field(
        None,
        max_length=63,
        description="Name of a Prometheus provider configured in the operator's settings "
        "(default: 'default').",
    )
    address: str | None = Field(
        None,
        max_length=2048,
        description="Inline Prometheus address; used only when the operator's settings allow "
        "inline addresses. Never receives configured credentials.",
    )
    interval: str = Field(
        "30s",
        max_length=32,
        description="Time between measurements (default 30s).",
        json_schema_extra=rules(
            duration_rule("analysis.interval"),
            cel(matches("[1-9]"), "analysis.interval must be greater than zero"),
        ),
    )
    failure_limit: int = Field(
        2, ge=0, le=1000, description="Failed measurements per metric beyond which it rolls back."
    )
    inconclusive_limit: int = Field(
        3, ge=0, le=1000, description="Inconclusive measurements beyond which it pauses."
    )
    consecutive_error_limit: int = Field(
        4, ge=0, le=1000, description="Consecutive errors beyond which it pauses."
    )
    min_samples: MinSamples | None = Field(
        None, description="Fewest samples for a measurement to count."
    )
    metrics: list[Metric] = Field(
        min_length=1, max_length=MAX_METRICS, description="Metrics to measure."
    )


class Bake(ApiModel):
    """Analysis continues after promotion for this long (phase Baking)."""

    duration: str = Field(
        max_length=32,
        description="e.g. 10m.",
        json_schema_extra=rules(duration_rule("bake.duration")),
    )
