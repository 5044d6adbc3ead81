"""``ModelVersion``: an immutable registry record of one trained model version.

A ModelVersion is a record, not a workload: it gets a Deployment (with a Service and a
PodDisruptionBudget) only while a Rollout serves it. Its whole ``spec`` is immutable once
created, enforced by the API server (CEL ``self == oldSelf``), so what was evaluated
offline is exactly what serves; a change is a new ModelVersion.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from ferryman.api.common import (
    API_VERSION,
    ApiModel,
    Conditions,
    LongStr,
    ObjectMeta,
    bounded_text,
    cel,
    dns_label_rule,
    matches,
    newest_items,
    rules,
)
from ferryman.api.rollout import HistoryCause, HistoryOutcome, Measurement
from ferryman.api.rollout_limits import MAX_REASON
from ferryman.api.serving import (
    MAX_ENV_FROM,
    MAX_PORTS,
    MAX_VOLUMES,
    Probe,
    SecurityContext,
    ServingPort,
    Volume,
    VolumeMount,
    serving_rules,
)
from ferryman.api.serving_env import EnvFromSource, EnvVar
from ferryman.api.serving_history import MAX_SERVED_INTERVALS, OlderHistory, ServedInterval

KIND = "ModelVersion"
PLURAL = "modelversions"

URI_SCHEMES = ("s3", "gs", "https", "pvc", "oci")
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"


class Artifact(ApiModel):
    """Where the trained model's files are, and the digest they must have.

    A file or a directory tree (docs/artifacts.md): the digest is the file's sha256, or
    the sha256 of the tree's manifest (``ferryman.storage.tree``); ``kubectl ferryman
    digest PATH|URI`` prints it."""

    uri: str = Field(
        max_length=2048,
        description="URL of the model artifact; scheme s3, gs, https, pvc or oci "
        "(e.g. s3://models/fraud/1.3.0/model.onnx).",
        json_schema_extra=rules(
            cel(
                matches("^(" + "|".join(URI_SCHEMES) + ")://[^/]+.*$"),
                "artifact.uri must be a URL with scheme s3, gs, https, pvc or oci, "
                "e.g. s3://bucket/path/model.onnx",
            )
        ),
    )
    digest: str = Field(
        max_length=71,
        description="sha256 digest of the artifact, 'sha256:' followed by 64 lowercase hex "
        "characters: of the file, or of a directory's manifest (docs/artifacts.md; "
        "`kubectl ferryman digest` prints it). The storage initializer verifies it before "
        "the model server starts.",
        json_schema_extra=rules(
            cel(
                matches(DIGEST_PATTERN),
                "artifact.digest must be 'sha256:' followed by 64 lowercase hex characters",
            )
        ),
    )
    format: str | None = Field(
        None, max_length=64, description="Serialization format, e.g. onnx, torchscript, xgboost."
    )
    size: str | None = Field(
        None,
        max_length=32,
        description="Upper bound of the artifact's size, a quantity (e.g. 20Gi): the "
        "model volume's emptyDir sizeLimit and the storage initializer's ephemeral-storage "
        "request. Unset: no limit (docs/artifacts.md).",
        json_schema_extra=rules(
            cel(
                "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
                "artifact.size must be a positive quantity such as 500Mi or 20Gi",
            )
        ),
    )


class Serving(ApiModel):
    """How one replica serves this version (docs/serving-runtimes.md)."""

    model_config = ApiModel.model_config | ConfigDict(json_schema_extra=rules(*serving_rules()))

    image: str = Field(
        min_length=1,
        max_length=512,
        description="Model server image.",
        # A Deployment refuses such an image (found by the reconcile fuzz, issue 13 §3).
        json_schema_extra=rules(
            cel("self == self.trim()", "serving.image must not start or end with whitespace")
        ),
    )
    port: int = Field(
        8080,
        ge=1,
        le=65535,
        description="The primary HTTP port (named http: the route's and the readiness "
        "probe's), default 8080. Or give it as a serving.ports entry named http.",
    )
    command: list[LongStr] | None = Field(
        None, max_length=32, description="Overrides the image's entrypoint."
    )
    args: list[LongStr] | None = Field(None, max_length=64, description="Model server arguments.")
    env: list[EnvVar] | None = Field(
        None,
        max_length=128,
        description="Environment variables: a value, or valueFrom a Secret or ConfigMap "
        "key, a pod field or a resource (core/v1 EnvVar).",
    )
    env_from: list[EnvFromSource] | None = Field(
        None,
        max_length=MAX_ENV_FROM,
        description="Every key of Secrets and ConfigMaps as variables (core/v1 EnvFromSource).",
    )
    resources: dict[str, Any] | None = Field(
        None, description="Resource requests and limits (core/v1 ResourceRequirements)."
    )
    readiness_path: str = Field(
        "/ready",
        max_length=256,
        description="HTTP path of the readiness probe on the http port (default /ready): "
        "the short form of readinessProbe.",
        json_schema_extra=rules(cel("self.startsWith('/')", "readinessPath must start with '/'")),
    )
    ports: list[ServingPort] | None = Field(
        None,
        max_length=MAX_PORTS,
        description="Named ports with their appProtocol (gRPC, metrics, management...); "
        "the version's Service carries each of them.",
    )
    startup_probe: Probe | None = Field(
        None, description="Holds liveness and readiness off until the model has loaded."
    )
    liveness_probe: Probe | None = Field(None, description="Restarts a server that hangs.")
    readiness_probe: Probe | None = Field(
        None, description="Ready for traffic (default: httpGet readinessPath on http)."
    )
    volumes: list[Volume] | None = Field(
        None,
        max_length=MAX_VOLUMES,
        description="Extra volumes: emptyDir (medium Memory for /dev/shm), configMap, secret.",
    )
    volume_mounts: list[VolumeMount] | None = Field(
        None, max_length=MAX_VOLUMES, description="Where the model server mounts them."
    )
    security_context: SecurityContext | None = Field(
        None,
        description="Overrides within the restricted Pod Security Standard: user and "
        "groups, read-only root filesystem, NET_BIND_SERVICE.",
    )


DVC_MD5_PATTERN = r"^[a-f0-9]{32}(\.dir)?$"
MAX_DATASETS = 16


class DvcData(ApiModel):
    """The training data as DVC tracks it (docs/mlflow.md): the Git repository and
    revision holding the ``.dvc``/``dvc.lock`` file, the data's path in it, and the md5
    DVC recorded for it (a directory's ends in ``.dir``)."""

    repo: str = Field(
        min_length=1, max_length=1024, description="Git repository URL of the DVC project."
    )
    rev: str = Field(
        min_length=1, max_length=128, description="Git revision (commit) of the DVC project."
    )
    path: str = Field(
        min_length=1, max_length=1024, description="Path of the data in the DVC project."
    )
    md5: str = Field(
        max_length=36,
        description="md5 that DVC recorded for the data (dvc.lock or the .dvc file): 32 "
        "lowercase hex characters, followed by '.dir' for a directory.",
        json_schema_extra=rules(
            cel(
                matches(DVC_MD5_PATTERN),
                "lineage.data.dvc.md5 must be 32 lowercase hex characters, optionally "
                "followed by .dir",
            )
        ),
    )


class Dataset(ApiModel):
    """A dataset input of the training run (MLflow's ``run.inputs.dataset_inputs``)."""

    name: str = Field(min_length=1, max_length=256, description="Dataset name.")
    digest: str | None = Field(None, max_length=128, description="Dataset digest.")
    source_type: str | None = Field(
        None, max_length=64, description="Kind of source, e.g. local, s3, delta, http."
    )
    source: str | None = Field(
        None, max_length=1024, description="Where the dataset was read from."
    )
    context: str | None = Field(
        None, max_length=64, description="How the run used it, e.g. training, evaluation."
    )


class LineageData(ApiModel):
    """The data this version was trained on, machine-readable (``dataVersion`` stays
    the human label)."""

    dvc: DvcData | None = Field(None, description="The training data as DVC tracks it.")
    datasets: list[Dataset] | None = Field(
        None,
        max_length=MAX_DATASETS,
        description="Dataset inputs the training run logged (MLflow).",
    )


class Lineage(ApiModel):
    """Where this version came from. Copied to annotations of its Deployment."""

    data_version: str | None = Field(None, max_length=256, description="Training data version.")
    code_commit: str | None = Field(None, max_length=128, description="Training code commit.")
    training_run: str | None = Field(
        None, max_length=1024, description="Training run, e.g. mlflow://runs/8c1f..."
    )
    parent: str | None = Field(
        None, max_length=128, description="The version this one was derived from."
    )
    data: LineageData | None = Field(
        None, description="The training data: DVC location and md5, dataset inputs."
    )


IMMUTABLE_MESSAGE = (
    "ModelVersion spec is immutable: register a new ModelVersion for a changed model"
)


class ModelVersionSpec(ApiModel):
    """The immutable record. Every field is fixed at creation."""

    model_config = ApiModel.model_config | ConfigDict(
        json_schema_extra=rules(cel("self == oldSelf", IMMUTABLE_MESSAGE))
    )

    model: str = Field(
        max_length=63,
        description="The logical model this is a version of (a DNS-1123 label). A Rollout "
        "with the same spec.model serves it.",
        json_schema_extra=rules(dns_label_rule("model")),
    )
    version: str = Field(
        max_length=128,
        description="Semantic version, unique per model in the namespace "
        "(pre-release and build metadata allowed, e.g. 1.3.0-rc.1+build.5).",
        json_schema_extra=rules(
            cel(
                "isSemver(self)",
                "version must be a semantic version such as 1.3.0 or 1.3.0-rc.1+build.5",
            )
        ),
    )
    artifact: Artifact = Field(description="The model artifact and its digest.")
    serving: Serving = Field(description="How one replica serves this version.")
    lineage: Lineage | None = Field(None, description="Where this version came from.")
    metrics: dict[str, float] | None = Field(
        None,
        max_length=64,
        description="Offline evaluation metrics, e.g. {auc: 0.941}. Rollout gates compare them.",
    )
    hyperparameters: dict[str, LongStr] | None = Field(
        None, max_length=128, description="Training hyperparameters, as strings."
    )
    signature: dict[str, Any] | None = Field(
        None, description="The model's input/output contract (free form)."
    )
    owner: str | None = Field(None, max_length=256, description="Who owns this model version.")


class ModelVersionPhase(StrEnum):
    REGISTERED = "Registered"
    DUPLICATE = "Duplicate"
    SERVING = "Serving"
    RETIRED = "Retired"


class Role(StrEnum):
    STABLE = "stable"
    CANDIDATE = "candidate"
    SHADOW = "shadow"
    PREVIEW = "preview"
    NONE = "none"


# One spelling for how a rollout ended: the Rollout's history outcome.
Outcome = HistoryOutcome


class LastOutcome(ApiModel):
    """How this version's last rollout ended."""

    outcome: Outcome = Field(
        description="Promoted, RolledBack, Aborted, Rejected, Superseded or Stopped."
    )
    # The history entry's reason, copied whole: one bound for both (rollout_limits).
    reason: Annotated[str, bounded_text(MAX_REASON)] = Field(
        "", max_length=MAX_REASON, description="Why."
    )
    at: datetime | None = Field(None, description="When.")
    cause: HistoryCause | None = Field(None, description="For RolledBack and Aborted: why.")
    measurement: Measurement | None = Field(
        None, description="For a rollback by analysis: the failed measurement that caused it."
    )
    rollout: str | None = Field(None, max_length=253, description="The Rollout that decided.")


class ModelVersionStatus(ApiModel):
    """Written by ferryman only."""

    phase: ModelVersionPhase | None = Field(
        None, description="Registered, Duplicate (never served), Serving or Retired."
    )
    role: Role | None = Field(
        None, description="Its role in its Rollout: stable, candidate, shadow, preview or none."
    )
    rollout: str | None = Field(None, max_length=253, description="The Rollout that serves it.")
    last_outcome: LastOutcome | None = Field(None, description="How its last rollout ended.")
    served_from: datetime | None = Field(
        None,
        description="When its Rollout took it on (as stable, candidate, shadow or preview; "
        "a candidate may get traffic later, or never).",
    )
    served_until: datetime | None = Field(
        None, description="When its Rollout let it go (phase Retired)."
    )
    serving_history: Annotated[list[ServedInterval] | None, newest_items(MAX_SERVED_INTERVALS)] = (
        Field(
            None,
            max_length=MAX_SERVED_INTERVALS,
            description="Every interval a Rollout served it, newest last: roles held, the "
            "Rollout's verdict (with the measurement behind a rollback) and why it stopped. "
            "Kept after its Rollout is deleted (docs/history-and-retention.md).",
        )
    )
    older_serving_history: OlderHistory | None = Field(
        None, description="Intervals that fell off servingHistory, summarized."
    )
    conditions: Conditions | None = None
    observed_generation: int | None = Field(
        None, description="The metadata.generation this status describes."
    )


class ModelVersion(ApiModel):
    """A trained model version registered for serving."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=lambda: ObjectMeta())
    spec: ModelVersionSpec
    status: ModelVersionStatus = Field(default_factory=lambda: ModelVersionStatus())
