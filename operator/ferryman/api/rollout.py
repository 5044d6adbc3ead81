"""``Rollout``: one per logical model, the owner of its traffic.

It decides which ModelVersion serves (``target``: a pinned semver, or ``track: latest``),
moves live traffic to a new version with exactly one strategy (canary, blueGreen or
shadow) over exactly one router (Gateway API, Istio, or plain Services), checks gates
before any traffic moves, and analyses Prometheus metrics while it does. The operator
never writes ``spec`` (GitOps owns it); everything it decides is in ``status``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ferryman.api.common import (
    API_VERSION,
    ApiModel,
    Conditions,
    LongStr,
    ObjectMeta,
    ShortStr,
    bounded_text,
    cel,
    dns_label_rule,
    duration_rule,
    matches,
    newest_items,
    rules,
)

KIND = "Rollout"
PLURAL = "rollouts"

MAX_STEPS = 32
MAX_METRICS = 16
MAX_GATES = 16
MAX_MEASUREMENTS = 50
MAX_HISTORY = 100
MAX_QUERY = 8192
MAX_REASON = 2048
MAX_MESSAGE = 2048
MAX_ACTION_ID = 128
# A query quoted in a reason or message is cut to this many characters: the full query is
# in spec.analysis, the rendered one in the measurement.
QUOTED_QUERY = 256


def _config(*items: dict[str, str]) -> ConfigDict:
    return ApiModel.model_config | ConfigDict(json_schema_extra=rules(*items))


class Target(ApiModel):
    """Which ModelVersion of the model to serve: exactly one of version or track."""

    model_config = _config(
        cel(
            "[has(self.version), has(self.track)].exists_one(x, x)",
            "target needs exactly one of version (a pinned semver) or track (latest)",
        ),
        cel(
            "!has(self.includePrereleases) || has(self.track)",
            "target.includePrereleases applies only with track: latest "
            "(a pinned version is served whatever it is)",
        ),
    )

    version: str | None = Field(
        None,
        max_length=128,
        description="Pinned semantic version of a ModelVersion of spec.model "
        "(GitOps changes this line).",
        json_schema_extra=rules(
            cel("isSemver(self)", "target.version must be a semantic version such as 1.3.0")
        ),
    )
    track: Literal["latest"] | None = Field(
        None,
        description="'latest': the highest semver ModelVersion of the model that is not a "
        "Duplicate, has not been rolled back and (unless includePrereleases) is not a "
        "pre-release such as 2.1.0-rc.1.",
    )
    include_prereleases: bool | None = Field(
        None,
        description="With track: latest, also consider pre-release versions (2.1.0-rc.1); "
        "off by default, so a release candidate never reaches production by accident.",
    )


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(max_length=253, description="Name of the object.")


class Placement(ApiModel):
    """Pod placement applied to every served version's pods."""

    node_selector: dict[str, ShortStr] | None = Field(
        None, max_length=32, description="nodeSelector."
    )
    tolerations: list[dict[str, Any]] | None = Field(
        None, max_length=32, description="Tolerations (core/v1 Toleration objects)."
    )
    affinity: dict[str, Any] | None = Field(None, description="Affinity (core/v1 Affinity).")
    service_account_name: str | None = Field(
        None, max_length=253, description="ServiceAccount the model server runs as."
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=16, description="imagePullSecrets, e.g. [{name: regcred}]."
    )
    priority_class_name: str | None = Field(None, max_length=253, description="PriorityClass.")
    resources: dict[str, Any] | None = Field(
        None, description="Overrides the ModelVersion's serving.resources."
    )
    pod_annotations: dict[str, LongStr] | None = Field(
        None, max_length=64, description="Extra annotations on every model server pod."
    )


class Storage(ApiModel):
    """Credentials for the storage initializer that downloads artifacts."""

    secret_name: str | None = Field(
        None,
        max_length=253,
        description="Secret whose keys become the storage initializer's environment "
        "(e.g. AWS_ACCESS_KEY_ID).",
    )


class ServicePort(ApiModel):
    """The Services ferryman creates."""

    port: int = Field(80, ge=1, le=65535, description="Service port (default 80).")


class ParentRef(ApiModel):
    """A Gateway API parentRef: the Gateway (and optionally its listener) to attach to."""

    name: str = Field(max_length=253, description="Name of the Gateway.")
    namespace: str | None = Field(None, max_length=63, description="Namespace of the Gateway.")
    section_name: str | None = Field(None, max_length=253, description="Listener name.")
    port: int | None = Field(None, ge=1, le=65535, description="Listener port.")


class GatewayAPIRouting(ApiModel):
    """Route with a Gateway API HTTPRoute (weights and RequestMirror percent)."""

    parent_refs: list[ParentRef] = Field(
        min_length=1, max_length=16, description="Gateways the HTTPRoute attaches to."
    )
    hostnames: list[ShortStr] | None = Field(
        None, max_length=16, description="Hostnames of the HTTPRoute."
    )


class IstioRouting(ApiModel):
    """Route with an Istio VirtualService (weights, mirror and mirrorPercentage)."""

    hosts: list[ShortStr] = Field(
        min_length=1, max_length=16, description="Hosts of the VirtualService."
    )
    gateways: list[ShortStr] | None = Field(
        None, max_length=16, description="Gateways of the VirtualService."
    )


class ServiceRouting(ApiModel):
    """No mesh: canary by replica ratio behind one Service, blue-green by switching the
    Service's selector. Cannot mirror traffic."""


class TrafficRouting(ApiModel):
    """How traffic is split: exactly one of gatewayAPI, istio or service."""

    model_config = _config(
        cel(
            "[has(self.gatewayAPI), has(self.istio), has(self.service)].exists_one(x, x)",
            "trafficRouting needs exactly one router: gatewayAPI, istio or service",
        )
    )

    gateway_api: GatewayAPIRouting | None = Field(
        None, alias="gatewayAPI", description="Gateway API HTTPRoute routing."
    )
    istio: IstioRouting | None = Field(None, description="Istio VirtualService routing.")
    service: ServiceRouting | None = Field(
        None, description="Plain Services (no mesh, no mirroring)."
    )


class Pause(ApiModel):
    """Wait: for a duration, or (without one) until `kubectl ferryman promote`."""

    duration: str | None = Field(
        None,
        max_length=32,
        description="How long to wait, e.g. 2m. Without it, wait for promote.",
        json_schema_extra=rules(duration_rule("pause.duration")),
    )


class CanaryStep(ApiModel):
    """One canary step: exactly one of setWeight or pause."""

    model_config = _config(
        cel(
            "[has(self.setWeight), has(self.pause)].exists_one(x, x)",
            "each canary step needs exactly one action: setWeight or pause",
        )
    )

    set_weight: int | None = Field(
        None, ge=0, le=100, description="Percent of live traffic for the candidate (0-100)."
    )
    pause: Pause | None = Field(None, description="Wait before the next step.")


Steps = list[CanaryStep]


class Canary(ApiModel):
    """Move traffic step by step."""

    steps: Steps = Field(
        min_length=1, max_length=MAX_STEPS, description="Steps, executed in order."
    )


class BlueGreen(ApiModel):
    """Bring the candidate up at full size behind a preview Service, then switch 100%."""

    auto_promotion_seconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description="Promote automatically this long after the preview is Ready "
        "(and analysis passed). Without it, wait for promote.",
    )
    preview_mirror_percent: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Percent of live traffic mirrored to the preview so pre-promotion "
        "analysis has data (gatewayAPI or istio only).",
    )


class ShadowThen(StrEnum):
    PROMOTE = "promote"
    CANARY = "canary"
    STOP = "stop"


class Shadow(ApiModel):
    """Mirror live traffic to the candidate; its responses are discarded."""

    model_config = _config(
        cel(
            "self.then != 'canary' || has(self.steps)",
            "shadow with then: canary needs steps for the canary that follows",
        )
    )

    mirror_percent: int = Field(
        ge=0, le=100, description="Percent of live traffic mirrored to the candidate (0-100)."
    )
    duration: str = Field(
        max_length=32,
        description="How long to shadow, e.g. 15m.",
        json_schema_extra=rules(duration_rule("shadow.duration")),
    )
    then: ShadowThen = Field(
        description="After duration with passing analysis: promote, canary or stop."
    )
    steps: Steps | None = Field(
        None, max_length=MAX_STEPS, description="Canary steps when then is canary."
    )


class Strategy(ApiModel):
    """How traffic moves: exactly one of canary, blueGreen or shadow."""

    model_config = _config(
        cel(
            "[has(self.canary), has(self.blueGreen), has(self.shadow)].exists_one(x, x)",
            "strategy needs exactly one of canary, blueGreen or shadow",
        )
    )

    canary: Canary | None = Field(None, description="Step-by-step traffic shifting.")
    blue_green: BlueGreen | None = Field(
        None, alias="blueGreen", description="Preview, then switch."
    )
    shadow: Shadow | None = Field(None, description="Mirrored traffic only.")


_ONE_THRESHOLD = (
    "has(self.min) || has(self.max) || has(self.maxIncreaseVsStable) || has(self.maxDropVsStable)"
)


class OfflineGate(ApiModel):
    """A check of the candidate's offline metrics (ModelVersion spec.metrics)."""

    model_config = _config(
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
    """Checked before any traffic moves; a failing candidate is Rejected."""

    offline_metrics: list[OfflineGate] | None = Field(
        None, max_length=MAX_GATES, description="Offline metric gates."
    )


class MinSamples(ApiModel):
    """A measurement with fewer samples than this is Inconclusive, never a verdict."""

    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL returning the number of samples (templated like metric queries).",
    )
    min: float = Field(ge=0, description="Fewest samples for a measurement to count.")


class Metric(ApiModel):
    """A Prometheus query and its thresholds."""

    model_config = _config(
        cel(
            _ONE_THRESHOLD,
            "metric needs at least one threshold: min, max, maxIncreaseVsStable or maxDropVsStable",
        )
    )

    name: str = Field(
        max_length=63,
        description="Metric name (a DNS-1123 label), e.g. error-rate.",
        json_schema_extra=rules(dns_label_rule("metric name")),
    )
    query: str = Field(
        max_length=4096,
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


class Analysis(ApiModel):
    """Prometheus analysis while traffic moves and during bake."""

    model_config = _config(
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


_MIRROR_RULES = (
    cel(
        "!has(self.strategy.shadow) || !has(self.trafficRouting.service)",
        "strategy.shadow needs a router that can mirror traffic (gatewayAPI or istio); "
        "trafficRouting.service cannot mirror",
    ),
    cel(
        "!has(self.strategy.blueGreen) || !has(self.strategy.blueGreen.previewMirrorPercent) || "
        "self.strategy.blueGreen.previewMirrorPercent == 0 || !has(self.trafficRouting.service)",
        "blueGreen.previewMirrorPercent needs a router that can mirror traffic (gatewayAPI or "
        "istio); trafficRouting.service cannot mirror",
    ),
    cel(
        "self.model == oldSelf.model",
        "model is immutable: create a new Rollout for another model",
    ),
)


class RolloutSpec(ApiModel):
    """What to serve and how to move traffic to it."""

    model_config = _config(*_MIRROR_RULES)

    model: str = Field(
        max_length=63,
        description="The logical model (ModelVersion spec.model) this Rollout serves.",
        json_schema_extra=rules(dns_label_rule("model")),
    )
    target: Target = Field(description="The version to serve: {version: X} or {track: latest}.")
    replicas: int = Field(1, ge=0, le=1000, description="Replicas of the stable version.")
    template: Placement | None = Field(None, description="Pod placement for every version.")
    storage: Storage | None = Field(None, description="Credentials for artifact download.")
    service: ServicePort | None = Field(None, description="Port of the Services (default 80).")
    traffic_routing: TrafficRouting = Field(description="Exactly one router.")
    strategy: Strategy = Field(description="Exactly one strategy.")
    gates: Gates | None = Field(None, description="Checks before any traffic moves.")
    analysis: Analysis | None = Field(None, description="Prometheus analysis.")
    bake: Bake | None = Field(None, description="Analysis after promotion.")
    scale_down_delay_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="How long the previous stable stays warm after promotion (default 600).",
    )
    progress_deadline_seconds: int = Field(
        600,
        ge=1,
        le=86400,
        description="A candidate not Ready for a step within this long is rolled back "
        "(default 600).",
    )
    history_limit: int = Field(
        20, ge=1, le=MAX_HISTORY, description="Entries kept in status.history (default 20)."
    )


def action_key(action_id: str) -> str:
    """What ``status.handledActionId`` records for the nonce ``action_id`` (the
    ``ferryman.dev/action-id`` annotation, any length a user writes): the id itself when
    it fits in ``MAX_ACTION_ID`` characters, else ``sha256:`` and its hex digest, so a long
    nonce is still handled exactly once and never makes the status write fail."""
    if len(action_id) <= MAX_ACTION_ID:
        return action_id
    return "sha256:" + hashlib.sha256(action_id.encode()).hexdigest()


class RolloutPhase(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    BAKING = "Baking"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    REJECTED = "Rejected"
    INVALID = "Invalid"


class PauseReason(StrEnum):
    STEP = "Step"
    MANUAL = "Manual"
    INCONCLUSIVE = "Inconclusive"
    ANALYSIS_ERROR = "AnalysisError"


class PauseStatus(ApiModel):
    """Why the rollout waits."""

    reason: PauseReason = Field(description="Step, Manual, Inconclusive or AnalysisError.")
    since: datetime | None = Field(None, description="When the pause began.")
    message: Annotated[str, bounded_text(1024)] = Field("", max_length=1024, description="Details.")


class Weights(ApiModel):
    """Traffic as read back from the route."""

    stable: int = Field(100, ge=0, le=100, description="Percent to the stable version.")
    candidate: int = Field(0, ge=0, le=100, description="Percent to the candidate.")
    mirror_percent: int = Field(
        0, ge=0, le=100, description="Percent of traffic mirrored to the candidate."
    )


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Measurement(ApiModel):
    """One evaluated measurement of one metric."""

    metric: Annotated[str, bounded_text(63)] = Field(max_length=63)
    query: Annotated[str, bounded_text(MAX_QUERY)] = Field(
        "",
        max_length=MAX_QUERY,
        description="The rendered query (shortened with a marker when longer; the full "
        "query is the one in spec.analysis).",
    )
    value: float | None = None
    stable_value: float | None = None
    threshold: Annotated[str, bounded_text(256)] = Field(
        "", max_length=256, description="The threshold it was judged by."
    )
    verdict: Verdict
    message: Annotated[str, bounded_text(1024)] = Field("", max_length=1024)
    at: datetime


class AnalysisStatus(ApiModel):
    """Counters for the current candidate (reset on a new target and on retry)."""

    failures: dict[str, int] | None = Field(
        None, max_length=MAX_METRICS, description="Failed measurements per metric."
    )
    inconclusive: int = 0
    consecutive_errors: int = 0
    next_measurement_at: datetime | None = None
    since: datetime | None = Field(
        None,
        description="The last weight change: measurements from then on are the evidence "
        "the next weight increase or promotion needs.",
    )
    measurements: Annotated[list[Measurement] | None, newest_items(MAX_MEASUREMENTS)] = Field(
        None, max_length=MAX_MEASUREMENTS, description="The latest measurements, newest last."
    )


class HistoryOutcome(StrEnum):
    """How one candidate's rollout ended (metrics count by this, never by reason text)."""

    PROMOTED = "Promoted"  # made stable
    ROLLED_BACK = "RolledBack"  # traffic returned to stable by ferryman, or by undo
    ABORTED = "Aborted"  # traffic returned to stable by `kubectl ferryman abort`
    REJECTED = "Rejected"  # refused by gates before any traffic
    SUPERSEDED = "Superseded"  # a new target replaced it mid-rollout (routine GitOps)
    STOPPED = "Stopped"  # shadow with then: stop completed; stable untouched


class HistoryCause(StrEnum):
    """What caused a RolledBack or Aborted outcome."""

    ANALYSIS = "Analysis"  # a metric failed beyond failureLimit while rolling out
    BAKE_ANALYSIS = "BakeAnalysis"  # a metric failed beyond failureLimit while baking
    PROGRESS_DEADLINE = "ProgressDeadline"  # not Ready within progressDeadlineSeconds
    USER = "User"  # `kubectl ferryman abort`
    UNDO = "Undo"  # `kubectl ferryman undo`


class HistoryEntry(ApiModel):
    """How one candidate's rollout ended."""

    version: Annotated[str, bounded_text(128)] = Field(max_length=128)
    outcome: HistoryOutcome = Field(
        description="Promoted, RolledBack, Aborted, Rejected, Superseded or Stopped."
    )
    cause: HistoryCause | None = Field(
        None,
        description="For RolledBack and Aborted: Analysis, BakeAnalysis, ProgressDeadline, "
        "User or Undo.",
    )
    at: datetime
    reason: Annotated[str, bounded_text(MAX_REASON)] = Field(
        "",
        max_length=MAX_REASON,
        description="Why, in words (shortened with a marker when longer).",
    )


class ActionResult(StrEnum):
    APPLIED = "Applied"
    REJECTED = "Rejected"


MAX_ACTION_MESSAGE = 1024


class LastAction(ApiModel):
    """The operator's verdict on the last user action it handled (its nonce, from the
    ferryman.dev/action-id annotation); `kubectl ferryman` waits for it."""

    id: str = Field(max_length=128, description="The action's ferryman.dev/action-id.")
    action: str = Field(max_length=32, description="promote, promote-full, abort, retry, undo.")
    result: ActionResult = Field(description="Applied or Rejected.")
    message: Annotated[str, bounded_text(MAX_ACTION_MESSAGE)] = Field(
        "", max_length=MAX_ACTION_MESSAGE, description="Why it was rejected, or what it did."
    )
    at: datetime | None = Field(None, description="When the operator decided.")


class RolloutStatus(ApiModel):
    """Written by ferryman only."""

    phase: RolloutPhase | None = None
    message: Annotated[str | None, bounded_text(MAX_MESSAGE)] = Field(None, max_length=MAX_MESSAGE)
    pause: PauseStatus | None = None
    stable_version: str | None = Field(None, max_length=128)
    candidate_version: str | None = Field(None, max_length=128)
    previous_stable_version: str | None = Field(None, max_length=128)
    # Stages: a shadow stage and up to MAX_STEPS canary steps; the index reaches their
    # count once all are done.
    current_step: int | None = Field(None, ge=0, le=MAX_STEPS + 1)
    canary_weight: int | None = Field(
        None,
        ge=0,
        le=100,
        description="The candidate weight the canary steps have reached; the route carries "
        "less while candidate pods are not Ready.",
    )
    step_started_at: datetime | None = Field(
        None, description="When the current step started (for progressDeadlineSeconds)."
    )
    stage_since: datetime | None = Field(
        None,
        description="When the timed part of the current step began (shadow mirroring, "
        "a Ready blue-green preview).",
    )
    scale_down_at: datetime | None = Field(
        None, description="When the previous stable version's Deployment is removed."
    )
    plan_hash: str | None = Field(
        None,
        max_length=32,
        description="Fingerprint of the plan (strategy kind and its steps) the candidate "
        "follows. When the spec's plan differs mid-rollout, the new plan starts from its "
        "first step (see docs/rollouts.md, Spec edits mid-rollout).",
    )
    analysis_hash: str | None = Field(
        None,
        max_length=32,
        description="Fingerprint of the analysis (metrics, thresholds, provider) the "
        "evidence since the last weight change was measured under; a change needs new "
        "evidence before the next weight increase or promotion.",
    )
    weights: Weights | None = None
    analysis: AnalysisStatus | None = None
    rolled_back_versions: Annotated[list[ShortStr] | None, newest_items(MAX_HISTORY)] = Field(
        None, max_length=MAX_HISTORY, description="Versions rolled back, newest last."
    )
    history: Annotated[list[HistoryEntry] | None, newest_items(MAX_HISTORY)] = Field(
        None, max_length=MAX_HISTORY
    )
    handled_action_id: str | None = Field(
        None,
        max_length=MAX_ACTION_ID,
        description="ferryman.dev/action-id of the last handled action (a sha256 digest "
        "when the id is longer).",
    )
    last_action: LastAction | None = Field(
        None, description="The verdict on the last handled action: Applied or Rejected, why."
    )
    conditions: Conditions | None = None
    observed_generation: int | None = None


class Rollout(ApiModel):
    """The traffic owner of one logical model."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=lambda: ObjectMeta())
    spec: RolloutSpec
    status: RolloutStatus = Field(default_factory=lambda: RolloutStatus())
