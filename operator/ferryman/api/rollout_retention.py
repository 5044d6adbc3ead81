"""``spec.retention`` of a Rollout (issue 17 §5): which of its model's ModelVersions are
kept, and what happens to the others. Its own module because the rule has several
parts (keep the newest, keep the recently served, never touch what serves or is
pinned, never delete what a GitOps tool keeps in Git); the decision is
``plan.retention``, the writes ``handlers.retention`` (docs/history-and-retention.md).
"""

from __future__ import annotations

from pydantic import Field

from ferryman.api.common import GROUP, ApiModel

# A ModelVersion with this annotation (any value but "false") is never expired.
PIN = f"{GROUP}/pin"

# Metadata a GitOps tool sets on what it applies from Git: such a ModelVersion, deleted,
# would be re-created at the next sync, so it is only marked. Argo CD tracks by the
# annotation (its default since v2.x "annotation" tracking) or by the label (its
# "label" tracking; Helm sets the same label, which only makes the rule more careful),
# or by the custom label its resource-tracking docs configure instead
# (application.instanceLabelKey: argocd.argoproj.io/instance); Flux's kustomize- and
# helm-controller label what they apply.
GITOPS_ANNOTATIONS = ("argocd.argoproj.io/tracking-id",)
GITOPS_LABELS = (
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
)

MAX_KEEP_LAST = 1000
MAX_SERVED_WITHIN_DAYS = 3650


class Retention(ApiModel):
    """Which ModelVersions of the Rollout's model are kept. Kept always: the stable
    version, the candidate (and the version spec.target names), the previous stable
    while it is kept warm (scaleDownDelaySeconds, bake), and any ModelVersion annotated
    ferryman.dev/pin. Kept besides: the keepLast newest by registration (creation time),
    and any served within the last keepServedWithinDays days. Every other one expires:
    it is deleted when delete is true and no GitOps tool tracks it, else marked (phase
    Retired, condition Expired) with an Event."""

    keep_last: int = Field(
        ge=1,
        le=MAX_KEEP_LAST,
        description="Keep the newest N ModelVersions of the model, by registration order "
        "(metadata.creationTimestamp; ties by semantic version, then name).",
    )
    keep_served_within_days: int = Field(
        0,
        ge=0,
        le=MAX_SERVED_WITHIN_DAYS,
        description="Also keep every ModelVersion served (by any Rollout) within the last D "
        "days (default 0: only what serves now).",
    )
    delete: bool = Field(
        False,
        description="Delete expired ModelVersions (default false: only mark them). Never "
        "deletes one a GitOps tool tracks (argocd.argoproj.io/tracking-id, "
        "app.kubernetes.io/instance, argocd.argoproj.io/instance, Flux labels): that one "
        "is marked, with an Event asking to remove it from Git.",
    )
