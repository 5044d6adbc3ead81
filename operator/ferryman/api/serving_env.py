"""Environment variables of the model server: values, Secret and ConfigMap keys.

Apart from ``api/serving.py`` (ports, probes, volumes, security) only for its size. The
shapes are core/v1's (EnvVar, EnvFromSource), each name bounded and checked, so the
builders (``plan/serving.py``) copy them into the container unchanged and a credential
never has to be written into the ModelVersion itself.

What the schema refuses here is what the API server's own validation of a PodSpec
refuses (k8s.io/apimachinery ``pkg/util/validation`` and Kubernetes'
``pkg/apis/core/validation``), so that a ModelVersion the API server stores always
renders a Deployment server-side apply accepts (review14 R4-R6):

- names unique in ``env``, and none of the variables ferryman sets itself
  (``RESERVED_ENV``): a container's env is a list map keyed by name, so server-side
  apply refuses a repeated one;
- Secret and ConfigMap keys: ``IsConfigMapKey``, the pattern below and not '.', '..'
  nor anything starting with '..' (``hasChDirPrefix``);
- downward-API fields: the env list of fields, and a label key a qualified name
  (``IsQualifiedName``; an annotation key is checked lowercased, so its prefix may hold
  capitals).

Variable names and envFrom prefixes keep the pattern of the strict ``IsEnvVarName``
(letters, digits, '-', '_', '.', no leading digit), stricter than the API server: from
Kubernetes 1.34, the oldest ferryman supports, RelaxedEnvironmentVariableValidation is
GA and any printable ASCII but '=' is a valid name ('.' and '..' included), so no rule
beyond that pattern is needed for a pod.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ferryman.api.common import ApiModel, LongStr, cel, matches, model_rules, rules
from ferryman.api.serving import DNS_SUBDOMAIN, name_rule

# What every Kubernetes version accepts as a variable name (newer ones accept more).
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# The variables ferryman sets in the model server (plan/serving.py's _env; the API layer
# may not import the plan, so a unit test holds the two equal).
RESERVED_ENV = ("MODEL_NAME", "MODEL_VERSION", "MODEL_URI", "MODEL_DIGEST", "MODEL_DIR")
# The downward API's fields for env (core/v1 validation's list).
FIELD_PATH = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[^']+'\]"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
# A qualified name (a label key): an optional DNS-subdomain prefix and '/', then at most
# 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY_PATH = rf"^metadata\.labels\['({_PREFIX}/)?{_NAME_PART}'\]$"
# Annotation keys are checked lowercased: the prefix may hold capitals.
ANNOTATION_KEY_PATH = (
    rf"^metadata\.annotations\['({_PREFIX.replace('a-z0-9', 'a-zA-Z0-9')}/)?{_NAME_PART}'\]$"
)


def no_chdir_prefix(what: str) -> dict[str, str]:
    """apimachinery's ``hasChDirPrefix``: not '.', not '..', not starting with '..'."""
    return cel(
        "self != '.' && !self.startsWith('..')",
        f"{what} must not be '.' or '..' nor start with '..'",
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
        json_schema_extra=rules(
            cel(matches(DATA_KEY), "keyRef.key must consist of letters, digits, '-', '_' and '.'"),
            no_chdir_prefix("keyRef.key"),
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
        json_schema_extra=rules(
            cel(
                matches(FIELD_PATH),
                "fieldRef.fieldPath must be a pod field the downward API offers",
            ),
            cel(
                f"!self.startsWith('metadata.labels[') || {matches(LABEL_KEY_PATH)}",
                "fieldRef.fieldPath: the key in metadata.labels['key'] must be a qualified "
                "name: an optional DNS subdomain and '/', then at most 63 letters, digits, "
                "'-', '_' and '.', starting and ending with a letter or digit",
            ),
            cel(
                f"!self.startsWith('metadata.annotations[') || {matches(ANNOTATION_KEY_PATH)}",
                "fieldRef.fieldPath: the key in metadata.annotations['key'] must be a qualified "
                "name: an optional DNS subdomain and '/', then at most 63 letters, digits, "
                "'-', '_' and '.', starting and ending with a letter or digit",
            ),
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
        json_schema_extra=rules(
            cel(
                matches(ENV_NAME),
                "env[].name must be letters, digits, '-', '_' and '.', not starting with a digit",
            ),
            cel(
                "!(self in [" + ", ".join(f"'{n}'" for n in RESERVED_ENV) + "])",
                "env[].name must not be "
                + ", ".join(RESERVED_ENV[:-1])
                + f" or {RESERVED_ENV[-1]}: ferryman sets them to the version's model and artifact",
            ),
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
        json_schema_extra=rules(
            cel(matches(ENV_NAME), "envFrom.prefix must be letters, digits, '-', '_' and '.'"),
        ),
    )
    secret_ref: ObjectRef | None = Field(None, description="A Secret.")
    config_map_ref: ObjectRef | None = Field(None, description="A ConfigMap.")
