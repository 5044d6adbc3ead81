"""Building blocks shared by ferryman's two custom resources.

Field names are snake_case in Python and camelCase on the wire (``alias_generator``), so
the same models parse what users write in YAML and produce the CRD schema. Validation
that users must see from ``kubectl apply`` lives in the schema as CEL rules
(``x-kubernetes-validations``) with messages that name the problem; pydantic repeats the
simple constraints so the operator never acts on an object the API server would reject.

Every string has a ``maxLength`` and every list a ``maxItems``: CEL rules over unbounded
values exceed the API server's cost budget, and bounded status keeps objects small.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "ferryman.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Go-style durations as users write them: 30s, 2m, 1h30m, 1.5h, 250ms. The one grammar:
# the CRD pattern (DURATION) and the parser (plan.durations) are both built from these.
DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}  # seconds per unit
DURATION_NUMBER = r"[0-9]+(\.[0-9]+)?"
# "ms" before "m": the alternation takes the first unit that matches.
DURATION_UNIT = "(" + "|".join(DURATION_SECONDS) + ")"
DURATION = rf"^({DURATION_NUMBER}{DURATION_UNIT})+$"


# Bounded strings for list items and map values (a bound on the list alone does not bound
# its items for CEL's cost estimate).
ShortStr = Annotated[str, Field(max_length=253)]
LongStr = Annotated[str, Field(max_length=4096)]

# What a shortened text ends with, so a reader knows there was more.
TRUNCATED = " …[truncated]"


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start followed by
    ``TRUNCATED`` so that the whole is exactly ``limit`` characters long."""
    if len(text) <= limit:
        return text
    if limit <= len(TRUNCATED):
        return text[:limit]
    return text[: limit - len(TRUNCATED)] + TRUNCATED


EVENT_MESSAGE_BYTES = 1024  # the API server refuses a longer Event message


def event_message(text: str, limit: int = EVENT_MESSAGE_BYTES) -> str:
    """``text`` cut so that its UTF-8 encoding fits ``limit`` bytes (an Event's message
    is bounded in bytes, not characters), ending in an ASCII marker when cut."""
    if len(text.encode()) <= limit:
        return text
    marker = " ...[truncated]"
    head = text.encode()[: limit - len(marker)].decode(errors="ignore")
    return head + marker


def _clipper(limit: int) -> Callable[[Any], Any]:
    def clip_value(value: Any) -> Any:
        return clip(value, limit) if isinstance(value, str) else value

    return clip_value


def _newest(limit: int) -> Callable[[Any], Any]:
    def keep_newest(value: Any) -> Any:
        return list(value)[-limit:] if isinstance(value, list) else value

    return keep_newest


def bounded_text(limit: int) -> Any:
    """For a status string written by ferryman: ``Annotated[str, bounded_text(n)]`` is
    shortened to ``n`` characters (with ``TRUNCATED``) wherever it is built or assigned,
    so a long input (a 4 KiB query, a long version or reason) can never make a status
    write fail on the CRD's ``maxLength``. Parsing what the API server returns is
    unaffected: it is within bounds already."""
    return BeforeValidator(_clipper(limit))


def newest_items(limit: int) -> Any:
    """For a status list kept newest last: ``Annotated[list[X], newest_items(n)]`` keeps
    the ``n`` newest items wherever it is built or assigned (CRD ``maxItems``)."""
    return BeforeValidator(_newest(limit))


def cel_str(value: str) -> str:
    """A CEL string literal for ``value`` (backslashes and quotes escaped), so regexes
    can be written here as plain Python strings."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def matches(pattern: str) -> str:
    """CEL: the value matches the RE2 ``pattern``."""
    return f"self.matches({cel_str(pattern)})"


def cel(rule: str, message: str, *, field_path: str | None = None) -> dict[str, str]:
    """One CEL validation rule with the message the API server returns when it fails."""
    r = {"rule": rule, "message": message}
    if field_path:
        r["fieldPath"] = field_path
    return r


def rules(*items: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a field or a model."""
    return {"x-kubernetes-validations": list(items)}


def dns_label_rule(what: str) -> dict[str, str]:
    return cel(
        matches(DNS_LABEL),
        f"{what} must be a DNS-1123 label: lowercase letters, digits and '-', "
        "starting and ending with a letter or digit",
    )


def duration_rule(what: str) -> dict[str, str]:
    # A regex, not CEL's duration(): that fails with CEL's own error, not this message.
    return cel(
        matches(DURATION),
        f"{what} must be a duration such as 30s, 2m or 1h30m",
    )


class ApiModel(BaseModel):
    """Base of every API object part: camelCase on the wire, unknown fields ignored
    (the API server prunes them anyway)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
        # Assignments are validated too, so bounded status fields stay bounded when the
        # state machine sets them (``status.message = ...``).
        validate_assignment=True,
    )


def model_rules(*items: dict[str, str]) -> ConfigDict:
    """An ``ApiModel`` config with CEL rules (``cel``) on the object itself, for rules that
    relate its fields (exactly one of, this one only with that one)."""
    return ApiModel.model_config | ConfigDict(json_schema_extra=rules(*items))


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A condition following the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(max_length=64, description="Type of condition in CamelCase, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, bounded_text(128)] = Field(
        "", max_length=128, description="Machine-readable reason for the last transition."
    )
    message: Annotated[str, bounded_text(2048)] = Field(
        "", max_length=2048, description="Human-readable details."
    )
    last_transition_time: datetime | None = Field(
        None, description="When the condition last changed status."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation the condition was computed from."
    )


Conditions = Annotated[
    list[Condition], Field(max_length=16, description="Current conditions of the object.")
]


class ObjectMeta(ApiModel):
    """The parts of metadata ferryman reads."""

    name: str = Field("", max_length=253)
    namespace: str = Field("", max_length=63)
    uid: str = Field("", max_length=64)
    generation: int = 0
    resource_version: str = Field("", max_length=64)
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
