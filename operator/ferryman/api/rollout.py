"""``Rollout``: one per logical model, the owner of its traffic.

It decides which ModelVersion serves (``target``: a pinned semver, or ``track: latest``),
moves live traffic to a new version with exactly one strategy (canary, blueGreen or
shadow) over exactly one router (Gateway API, Istio, or plain Services), checks gates
before any traffic moves, and analyses Prometheus metrics while it does. The operator
never writes ``spec`` (GitOps owns it); everything it decides is in ``status``.

The parts of the API live in modules of their own (``rollout_traffic``,
``rollout_strategy``, ``rollout_analysis``, ``rollout_status``, ``rollout_limits``);
this module keeps the ``Rollout`` and its spec, and re-exports every part so
``ferryman.api.rollout`` stays the one import for the Rollout's API.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ferryman.api.common import (
    API_VERSION,
    ApiModel,
    LongStr,
    ObjectMeta,
    ShortStr,
    cel,
    cel_str,
    dns_label_rule,
    matches,
    model_rules,
    rules,
)
from ferryman.api.rollout_analysis import Analysis, Bake, Gates, Metric, MinSamples, OfflineGate
from ferryman.api.rollout_limits import (
    MAX_ACTION_ID,
    MAX_ACTION_MESSAGE,
    MAX_ACTION_NAME,
    MAX_GATES,
    MAX_HISTORY,
    MAX_MEASUREMENTS,
    MAX_MESSAGE,
    MAX_METRICS,
    MAX_QUERY,
    MAX_REASON,
    MAX_REPLICAS,
    MAX_STEPS,
    QUOTED_QUERY,
)
from ferryman.api.rollout_notifications import (
    NOTIFICATIONS_RULES,
    NotificationBinding,
    NotificationEvent,
)
from ferryman.api.rollout_retention import Retention
from ferryman.api.rollout_status import (
    ActionResult,
    AnalysisStatus,
    HistoryCause,
    HistoryEntry,
    HistoryOutcome,
    LastAction,
    Measurement,
    PauseReason,
    PauseStatus,
    RolloutPhase,
    RolloutStatus,
    Verdict,
    Weights,
    action_key,
)
from ferryman.api.rollout_strategy import (
    BlueGreen,
    Canary,
    CanaryStep,
    Pause,
    Shadow,
    ShadowThen,
    Steps,
    Strategy,
)
from ferryman.api.rollout_traffic import (
    DNS_SUBDOMAIN,
    GatewayAPIRouting,
    IstioRouting,
    ParentRef,
    ServicePort,
    ServiceRouting,
    TrafficRouting,
)

# The Rollout's whole API, wherever each part is defined.
__all__ = [
    "KIND",
    "MAX_ACTION_ID",
    "MAX_ACTION_MESSAGE",
    "MAX_ACTION_NAME",
    "MAX_GATES",
    "MAX_HISTORY",
    "MAX_MEASUREMENTS",
    "MAX_MESSAGE",
    "MAX_METRICS",
    "MAX_QUERY",
    "MAX_REASON",
    "MAX_REPLICAS",
    "MAX_STEPS",
    "PLURAL",
    "QUOTED_QUERY",
    "ActionResult",
    "Analysis",
    "AnalysisStatus",
    "Bake",
    "BlueGreen",
    "Canary",
    "CanaryStep",
    "Gates",
    "GatewayAPIRouting",
    "HistoryCause",
    "HistoryEntry",
    "HistoryOutcome",
    "IstioRouting",
    "LastAction",
    "LocalObjectReference",
    "Measurement",
    "Metric",
    "MinSamples",
    "NotificationBinding",
    "NotificationEvent",
    "OfflineGate",
    "ParentRef",
    "Pause",
    "PauseReason",
    "PauseStatus",
    "Placement",
    "Retention",
    "Rollout",
    "RolloutPhase",
    "RolloutSpec",
    "RolloutStatus",
    "ServicePort",
    "ServiceRouting",
    "Shadow",
    "ShadowThen",
    "Steps",
    "Storage",
    "Strategy",
    "Target",
    "TrafficRouting",
    "Verdict",
    "Weights",
    "action_key",
]

KIND = "Rollout"
PLURAL = "rollouts"


class Target(ApiModel):
    """Which ModelVersion of the model to serve: exactly one of version or track."""

    model_config = model_rules(
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


# What a Deployment's pod template accepts (Kubernetes' own validation), so a Rollout
# whose pods the API server would refuse is refused at apply, not at every write of its
# Deployments (found by the reconcile fuzz, issue 13 §3).
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
_KEY_RULE = (
    "[prefix/]name, the name at most 63 letters, digits, '-', '_' or '.', starting and "
    "ending with a letter or digit"
)


def _subdomain_rule(what: str) -> dict[str, Any]:
    return rules(cel(matches(DNS_SUBDOMAIN), f"{what} must be a lowercase DNS name"))


class Placement(ApiModel):
    """Pod placement applied to every served version's pods."""

    node_selector: dict[str, ShortStr] | None = Field(
        None,
        max_length=32,
        description="nodeSelector.",
        json_schema_extra=rules(
            cel(
                f"self.all(k, k.matches({cel_str(QUALIFIED_NAME)}) && "
                f"self[k].matches({cel_str(LABEL_VALUE)}))",
                f"template.nodeSelector keys must be label keys ({_KEY_RULE}), and values "
                "label values (at most 63 of the same characters)",
            )
        ),
    )
    tolerations: list[dict[str, Any]] | None = Field(
        None, max_length=32, description="Tolerations (core/v1 Toleration objects)."
    )
    affinity: dict[str, Any] | None = Field(None, description="Affinity (core/v1 Affinity).")
    service_account_name: str | None = Field(
        None,
        max_length=253,
        description="ServiceAccount the model server runs as.",
        json_schema_extra=_subdomain_rule("template.serviceAccountName"),
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=16, description="imagePullSecrets, e.g. [{name: regcred}]."
    )
    priority_class_name: str | None = Field(
        None,
        max_length=253,
        description="PriorityClass.",
        json_schema_extra=_subdomain_rule("template.priorityClassName"),
    )
    resources: dict[str, Any] | None = Field(
        None, description="Overrides the ModelVersion's serving.resources."
    )
    pod_annotations: dict[str, LongStr] | None = Field(
        None,
        max_length=64,
        description="Extra annotations on every model server pod.",
        json_schema_extra=rules(
            cel(
                f"self.all(k, k.matches({cel_str(QUALIFIED_NAME)}))",
                f"template.podAnnotations keys must be annotation keys: {_KEY_RULE}",
            )
        ),
    )


class Storage(ApiModel):
    """Credentials for the storage initializer that downloads artifacts."""

    secret_name: str | None = Field(
        None,
        max_length=253,
        description="Secret whose keys become the storage initializer's environment "
        "(e.g. AWS_ACCESS_KEY_ID).",
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
        "!has(self.strategy.abTest) || has(self.analysis)",
        "strategy.abTest needs spec.analysis: its provider and interval read the objective "
        "(and its metrics are the guardrails)",
    ),
    cel(
        "self.model == oldSelf.model",
        "model is immutable: create a new Rollout for another model",
    ),
)


class RolloutSpec(ApiModel):
    """What to serve and how to move traffic to it."""

    model_config = model_rules(*_MIRROR_RULES)

    model: str = Field(
        max_length=63,
        description="The logical model (ModelVersion spec.model) this Rollout serves.",
        json_schema_extra=rules(dns_label_rule("model")),
    )
    target: Target = Field(description="The version to serve: {version: X} or {track: latest}.")
    replicas: int = Field(
        1,
        ge=0,
        le=MAX_REPLICAS,
        description="Replicas of the stable version; a canary's candidate gets its weight's "
        "share of it, a blue-green preview all of it. The scale subresource's "
        "specReplicasPath: an HPA or a KEDA ScaledObject may own it (docs/autoscaling.md); "
        "ferryman never writes it. No validation rule reads it, so any count an "
        "autoscaler writes within 0..1000 is accepted. Defaults to 1, also in the API "
        "server (the scale subresource needs the field).",
        # api.crds.SERVER_DEFAULT: a scale GET on a Rollout without spec.replicas fails.
        json_schema_extra={"x-ferryman-server-default": 1},
    )
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
    notifications: list[NotificationBinding] | None = Field(
        None,
        max_length=8,
        description="Webhook endpoints to notify, by name from the operator's settings "
        "(docs/notifications.md): [{endpoint: team-slack, events: [RolledBack]}].",
        json_schema_extra=NOTIFICATIONS_RULES,
    )
    retention: Retention | None = Field(
        None,
        description="Which of the model's ModelVersions to keep; the others are marked "
        "Retired or deleted (docs/history-and-retention.md). Unset: all are kept.",
    )
    deletion_policy: Literal["KeepStable", "Delete"] = Field(
        "KeepStable",
        description="What deleting the Rollout does to what serves (docs/reliability.md). "
        "KeepStable (default): the stable version's Deployment, Service and budget, the "
        "Service named after the Rollout and the route (sent 100% to stable first) keep "
        "serving, without an owner and labelled ferryman.dev/orphaned=true, so an accidental "
        "prune or a forced replace is no outage; a new Rollout of the same name and model "
        "adopts them. Candidates are deleted. Delete: everything goes with the Rollout.",
    )


class Rollout(ApiModel):
    """The traffic owner of one logical model."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=lambda: ObjectMeta())
    spec: RolloutSpec
    status: RolloutStatus = Field(default_factory=lambda: RolloutStatus())
