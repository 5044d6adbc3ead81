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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
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


_ENV_OVERRIDES = {
    "FERRYMAN_ALLOW_INLINE_ADDRESSES": "allowInlineAddresses",
    "FERRYMAN_STORAGE_INITIALIZER_IMAGE": "storageInitializerImage",
    "FERRYMAN_METRICS_ADDRESS": "metricsAddress",
    "FERRYMAN_METRICS_PORT": "metricsPort",
    "FERRYMAN_NAMESPACE": "namespace",
    "FERRYMAN_JSON_LOGS": "jsonLogs",
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
    return Settings.model_validate(data)
