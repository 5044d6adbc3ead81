"""The names ferryman derives from its objects' names, and the rules that keep them valid.

A ModelVersion's name names its Deployment, Service and PodDisruptionBudget; a Rollout's
name names its Service, its HTTPRoute or VirtualService and, for blue-green, the Service
``<rollout>-preview``; with a second route (east-west traffic, issue 15 §2) that route is
``<rollout>.mesh``, a name no Rollout can have (it has a dot). Service names are the
strictest of these: DNS-1035 labels (a lowercase letter first, then lowercase letters,
digits and '-', ending with a letter or digit, at most 63 characters; Kubernetes 1.34
still refuses a leading digit). So both
kinds' names must be DNS-1035 labels, and a Rollout's name must leave room for the
longest suffix ferryman appends: ``ROLLOUT_NAME_MAX`` = 63 - len("-preview") = 55.

The rules are written once, here: ``root_rules`` gives the CEL rules on
``self.metadata.name`` that the CRDs carry at their root (so ``kubectl apply`` refuses such
a name with the rule's message), and ``problem`` checks a name in Python with the same
messages (so the operator refuses to act on an object created before the rule existed).
The CEL rules apply at creation only (``optionalOldSelf``: names never change), so an
object created before them can still get its status written, lose its finalizer and be
deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ferryman.api.common import cel_str

SERVICE_NAME_MAX = 63
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# The CRDs bound metadata.name (and generateName) so the CEL rules' cost is bounded; 253 is
# the limit every object name has anyway.
OBJECT_NAME_MAX = 253

PREVIEW_SUFFIX = "-preview"
# Every suffix ferryman appends to a Rollout's name to name a Service.
ROLLOUT_SUFFIXES = (PREVIEW_SUFFIX,)
ROLLOUT_NAME_MAX = SERVICE_NAME_MAX - max(len(s) for s in ROLLOUT_SUFFIXES)
MODEL_VERSION_NAME_MAX = SERVICE_NAME_MAX

_DNS_1035 = re.compile(DNS_1035_LABEL)
_LABEL_RULE = (
    "must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter "
    "and ending with a letter or digit"
)


def rollout_services(rollout: str) -> tuple[str, ...]:
    """The Services a Rollout names after itself: the live (or stable) one and the
    blue-green preview. No served ModelVersion may have one of these names."""
    return (rollout, preview_service(rollout))


MESH_SUFFIX = ".mesh"


def mesh_route(rollout: str) -> str:
    """The route for east-west (mesh) traffic of Rollout ``rollout`` when it has a route
    for gateway traffic too (``routing.gatewayapi``, ``routing.istio``): a DNS subdomain
    with a dot, so never another Rollout's name or route."""
    return rollout + MESH_SUFFIX


def preview_service(rollout: str) -> str:
    """The blue-green preview Service of Rollout ``rollout``."""
    return rollout + PREVIEW_SUFFIX


@dataclass(frozen=True)
class NameRules:
    """What a kind's ``metadata.name`` must be, and what the name is used for."""

    kind: str
    max_length: int
    names: str  # what ferryman names after it, for the messages

    @property
    def label_message(self) -> str:
        return f"{self.kind} name {_LABEL_RULE} (it names {self.names})"

    @property
    def length_message(self) -> str:
        return (
            f"{self.kind} name must be at most {self.max_length} characters (it names {self.names})"
        )


MODEL_VERSION = NameRules(
    kind="ModelVersion",
    max_length=MODEL_VERSION_NAME_MAX,
    names="the version's Deployment, Service and PodDisruptionBudget",
)
ROLLOUT = NameRules(
    kind="Rollout",
    max_length=ROLLOUT_NAME_MAX,
    names=f"its Services and route, the longest being <name>{PREVIEW_SUFFIX}, and a "
    f"Service name has at most {SERVICE_NAME_MAX} characters",
)


def problem(rules: NameRules, name: str) -> str | None:
    """The first rule ``name`` breaks, as the API server words it; None if it is valid."""
    if not _DNS_1035.match(name):
        return f"{rules.label_message}: {name!r}"
    if len(name) > rules.max_length:
        return f"{rules.length_message}: {name!r} has {len(name)}"
    return None


def root_rules(rules: NameRules) -> list[dict[str, Any]]:
    """CEL rules for the root of a CRD schema, checked when an object is created."""
    return [
        {
            "rule": f"oldSelf.hasValue() || self.metadata.name.matches({cel_str(DNS_1035_LABEL)})",
            "message": rules.label_message,
            "fieldPath": ".metadata.name",
            "optionalOldSelf": True,
        },
        {
            "rule": f"oldSelf.hasValue() || size(self.metadata.name) <= {rules.max_length}",
            "message": rules.length_message,
            "fieldPath": ".metadata.name",
            "optionalOldSelf": True,
        },
    ]


def metadata_schema() -> dict[str, Any]:
    """The root ``metadata`` schema: only name and generateName may be described, and are
    bounded so rules over them have a bounded cost."""
    bounded = {"type": "string", "maxLength": OBJECT_NAME_MAX}
    return {"type": "object", "properties": {"name": bounded, "generateName": dict(bounded)}}
