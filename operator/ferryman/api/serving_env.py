"""Environment variables of the model server: values, Secret and ConfigMap keys.

Apart from ``api/serving.py`` (ports, probes, volumes, security) only for its size. The
shapes are core/v1's (EnvVar, EnvFromSource), each name bounded and checked, so the
builders (``plan/serving.py``) copy them into the container unchanged and a credential
never has to be written into the ModelVersion itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ferryman.api.common import ApiModel, LongStr, cel, model_rules
from ferryman.api.serving import DNS_SUBDOMAIN, name_rule

# What every Kubernetes version accepts as a variable name (newer ones accept more).
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# The downward API's fields for env (core/v1 validation's list).
FIELD_PATH = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[^']+'\]"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
Resource = Literal[
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
]


class KeyRef(ApiModel):
    """One key of a Secret or ConfigMap of the namespace."""

    name: str = Field(
        max_length=253,
        description="The object's name.",
        json_schema_extra=name_rule(DNS_SUBDOMAIN, "keyRef.name must be a DNS subdomain"),
    )
    key: str = Field(
        min_length=1,
        max_length=253,
        description="The key: letters, digits, '-', '_' and '.'.",
        json_schema_extra=name_rule(
            DATA_KEY, "keyRef.key must consist of letters, digits, '-', '_' and '.'"
        ),
    )
    optional: bool | None = Field(None, description="Start without it when it is missing.")


class FieldRef(ApiModel):
    """A field of the pod (downward API), e.g. metadata.name or status.podIP."""

    field_path: str = Field(
        max_length=256,
        description="One of the fields the downward API offers in env: metadata.name, "
        "metadata.namespace, metadata.uid, metadata.labels['key'], "
        "metadata.annotations['key'], spec.nodeName, spec.serviceAccountName, "
        "status.hostIP(s), status.podIP(s).",
        json_schema_extra=name_rule(
            FIELD_PATH, "fieldRef.fieldPath must be a pod field the downward API offers"
        ),
    )
    api_version: Literal["v1"] | None = Field(None, description="v1 (the default).")


class ResourceFieldRef(ApiModel):
    """A resource request or limit of the model server's container."""

    resource: Resource = Field(
        description="limits or requests of cpu, memory or ephemeral-storage."
    )


class EnvVarSource(ApiModel):
    """Where a variable's value comes from: exactly one source."""

    model_config = model_rules(
        cel(
            "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef), "
            "has(self.resourceFieldRef)].exists_one(x, x)",
            "valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef or "
            "resourceFieldRef",
        )
    )

    secret_key_ref: KeyRef | None = Field(None, description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(None, description="A key of a ConfigMap.")
    field_ref: FieldRef | None = Field(None, description="A field of the pod.")
    resource_field_ref: ResourceFieldRef | None = Field(None, description="A resource value.")


class EnvVar(ApiModel):
    """One environment variable of the model server (core/v1 EnvVar)."""

    model_config = model_rules(
        cel(
            "!(has(self.value) && has(self.valueFrom))",
            "an env variable takes value or valueFrom, not both",
        )
    )

    name: str = Field(
        min_length=1,
        max_length=256,
        description="The variable's name.",
        json_schema_extra=name_rule(
            ENV_NAME,
            "env[].name must be letters, digits, '-', '_' and '.', not starting with a digit",
        ),
    )
    value: LongStr | None = Field(None, description="A literal value.")
    value_from: EnvVarSource | None = Field(None, description="A value read at pod start.")


class ObjectRef(ApiModel):
    """A Secret or ConfigMap of the namespace, every key of it."""

    name: str = Field(
        max_length=253,
        description="The object's name.",
        json_schema_extra=name_rule(DNS_SUBDOMAIN, "envFrom.name must be a DNS subdomain"),
    )
    optional: bool | None = Field(None, description="Start without it when it is missing.")


class EnvFromSource(ApiModel):
    """Every key of a Secret or ConfigMap as environment variables."""

    model_config = model_rules(
        cel(
            "[has(self.secretRef), has(self.configMapRef)].exists_one(x, x)",
            "envFrom needs exactly one of secretRef or configMapRef",
        )
    )

    prefix: str | None = Field(
        None,
        max_length=253,
        description="Prepended to every key.",
        json_schema_extra=name_rule(
            ENV_NAME, "envFrom.prefix must be letters, digits, '-', '_' and '.'"
        ),
    )
    secret_ref: ObjectRef | None = Field(None, description="A Secret.")
    config_map_ref: ObjectRef | None = Field(None, description="A ConfigMap.")
