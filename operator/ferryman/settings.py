"""The operator's own settings, set by the platform team (Helm values -> a YAML file
mounted into the operator, plus a few environment overrides).

Prometheus providers are configured here, by name, with their credentials in a named
Secret: a Rollout only names a provider. Inline addresses in a Rollout are refused unless
``allowInlineAddresses`` is true, and configured credentials are never sent to them.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

SETTINGS_ENV = "FERRYMAN_SETTINGS"
IMAGE_REPOSITORY = "ghcr.io/ferryman-dev/ferryman"


def default_image(version: str | None = None) -> str:
    """The released operator image of ``version`` (default: the installed package's),
    e.g. ``ghcr.io/ferryman-dev/ferryman:0.1.0``. The same image runs the storage
    initializer, so an operator never asks for an initializer of another release.

    A PEP 440 local version's ``+`` (not allowed in an image tag) becomes ``-``. Raises
    ``importlib.metadata.PackageNotFoundError`` when ferryman is not installed (not even
    editable) and no version is given."""
    tag = (version or metadata.version("ferryman")).replace("+", "-")
    return f"{IMAGE_REPOSITORY}:{tag}"


DEFAULT_IMAGE = default_image()


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PrometheusProvider(_Model):
    """One Prometheus endpoint the platform team trusts."""

    address: str = Field(description="Base URL, e.g. http://prometheus.monitoring:9090.")
    secret_name: str | None = Field(
        None,
        description="Secret in the operator's namespace with `token` (bearer) or "
        "`username` and `password` (basic auth).",
    )
    timeout_seconds: float = Field(5.0, gt=0, le=60)
    insecure_skip_verify: bool = False
    ca_file: str | None = None


class LeaderElection(_Model):
    """Active/standby on a ``coordination.k8s.io`` Lease (``ferryman.kube.lease``).

    Timings follow client-go's rules (``k8s.io/client-go/tools/leaderelection``): a
    standby takes over a Lease whose record it has seen unchanged for
    ``leaseDurationSeconds``; the leader renews every ``retryPeriodSeconds`` and stops (the
    process exits) when it has not renewed for ``renewDeadlineSeconds``. Hence
    lease > renew deadline > 1.2 x retry period, and retry period >= 1 s. The defaults,
    10 / 7 / 2 s, are shorter than client-go's 15 / 10 / 2 so that failover after a
    SIGKILL stays under 15 s: a standby takes over the lease duration, plus up to one
    retry period, after it last observed a renewal (docs/reliability.md)."""

    enabled: bool = Field(False, description="Wait for the Lease before running anything.")
    lease_name: str = Field("ferryman-leader", min_length=1, max_length=253)
    namespace: str | None = Field(
        None, description="Where the Lease lives; default: the operator's namespace."
    )
    lease_duration_seconds: int = Field(10, ge=1, le=3600)
    renew_deadline_seconds: float = Field(7.0, ge=1)
    retry_period_seconds: float = Field(2.0, ge=1)
    identity: str = Field(
        "", max_length=128, description="The holder identity; empty: $POD_NAME, else host-pid."
    )

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElection:
        if not self.lease_duration_seconds > self.renew_deadline_seconds:
            raise ValueError("leaseDurationSeconds must be greater than renewDeadlineSeconds")
        if not self.renew_deadline_seconds > 1.2 * self.retry_period_seconds:
            raise ValueError("renewDeadlineSeconds must be greater than 1.2 x retryPeriodSeconds")
        return self


class NotificationEndpoint(_Model):
    """One webhook endpoint Rollouts may name (``spec.notifications[].endpoint``).

    The URL is given here or, when it is itself a credential (Slack's and Teams' URLs
    are), as the key ``url`` of the Secret ``secretName``; that Secret's key ``hmacKey``
    is the HMAC-SHA256 signing key (docs/notifications.md). Neither is ever written to a
    ConfigMap by the chart."""

    url: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^https?://[^\s/]+",
        description="http(s) URL; the Secret's `url` key wins when both are set.",
    )
    format: Literal["generic", "slack", "teams"] = Field(
        "generic",
        description="generic (ferryman's JSON schema), slack (incoming webhook: text and "
        "blocks) or teams (a message with an Adaptive Card attachment).",
    )
    secret_name: str | None = Field(
        None,
        max_length=253,
        description="Secret in the operator's namespace with `hmacKey` and/or `url`.",
    )
    signed: bool = Field(
        False,
        description="Every request must be signed: a Secret `secretName` without "
        "`hmacKey` (key deleted or misspelt, Secret not created yet) is a failed delivery, "
        "retried with backoff, never an unsigned request. The chart sets it when it is "
        "given `hmacKey`.",
    )
    timeout_seconds: float = Field(5.0, gt=0, le=60, description="Per request.")

    @model_validator(mode="after")
    def _addressed(self) -> NotificationEndpoint:
        if not self.url and not self.secret_name:
            raise ValueError("a notification endpoint needs url or secretName (key url)")
        if self.signed and not self.secret_name:
            raise ValueError("a signed notification endpoint needs secretName (key hmacKey)")
        return self


class NotificationRetry(_Model):
    """Exponential backoff of a failed delivery: attempt n+1 waits
    ``min(initialDelaySeconds * 2^(n-1), maxDelaySeconds)`` after the n-th failure; after
    ``maxAttempts`` failures the event is abandoned (Warning Event, counted in status)."""

    initial_delay_seconds: float = Field(2.0, gt=0, le=3600)
    max_delay_seconds: float = Field(300.0, gt=0, le=86400)
    max_attempts: int = Field(20, ge=1, le=1000)


class Notifications(_Model):
    """Webhook endpoints by name, and how failed deliveries are retried."""

    endpoints: dict[str, NotificationEndpoint] = Field(default_factory=dict)
    retry: NotificationRetry = Field(default_factory=NotificationRetry)


class Settings(_Model):
    providers: dict[str, PrometheusProvider] = Field(default_factory=dict)
    allow_inline_addresses: bool = False
    # The init container that downloads and verifies artifacts (default: this release's
    # operator image, which carries ``ferryman.storage_init``); empty: no init container.
    storage_initializer_image: str | None = DEFAULT_IMAGE
    metrics_address: str = "127.0.0.1"
    metrics_port: int = Field(8000, ge=0, le=65535)
    namespace: str | None = Field(
        None, description="The operator's namespace, where provider Secrets live."
    )
    json_logs: bool = False
    leader_election: LeaderElection = Field(default_factory=LeaderElection)
    notifications: Notifications = Field(default_factory=Notifications)


_ENV_OVERRIDES = {
    "FERRYMAN_ALLOW_INLINE_ADDRESSES": "allowInlineAddresses",
    "FERRYMAN_STORAGE_INITIALIZER_IMAGE": "storageInitializerImage",
    "FERRYMAN_METRICS_ADDRESS": "metricsAddress",
    "FERRYMAN_METRICS_PORT": "metricsPort",
    "FERRYMAN_NAMESPACE": "namespace",
    "FERRYMAN_JSON_LOGS": "jsonLogs",
}
# Overrides of leaderElection's fields.
_LEADER_ENV_OVERRIDES = {
    "FERRYMAN_LEADER_ELECT": "enabled",
    "FERRYMAN_LEADER_ELECTION_NAMESPACE": "namespace",
}


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from the YAML file (argument or $FERRYMAN_SETTINGS), then environment
    overrides. A missing file is an error; no file at all means defaults."""
    env = os.environ if environ is None else environ
    source = path or env.get(SETTINGS_ENV)
    data: dict[str, Any] = {}
    if source:
        data = yaml.safe_load(Path(source).read_text()) or {}
    for var, key in _ENV_OVERRIDES.items():
        if var in env:
            data[key] = env[var]
    for var, key in _LEADER_ENV_OVERRIDES.items():
        if var in env:
            data.setdefault("leaderElection", {})[key] = env[var]
    return Settings.model_validate(data)
