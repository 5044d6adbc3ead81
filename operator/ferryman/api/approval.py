"""Approvals with proven identity: the ``ModelApproval`` resource, the Rollout's
``spec.gates.approvals`` and ``status.approval``, and the admission policy that proves
who wrote an approval (docs/approvals.md).

A ModelApproval names a Rollout and the exact candidate version it approves, and who
approved it (``approvedBy``) and as a member of which groups (``groups``). The operator
cannot tell who created an object, so the API server proves it: a
``ValidatingAdmissionPolicy`` (CEL, no webhook; admissionregistration.k8s.io/v1, GA
since Kubernetes 1.30) refuses a CREATE whose ``approvedBy`` is not
``request.userInfo.username`` or that claims a group not in ``request.userInfo.groups``,
and the spec is immutable (``self == oldSelf``), so no UPDATE can change what was
proven. RBAC decides who may create approvals in a namespace. The policy and its binding
are generated here (``policy_documents``) into ``crds/policies/`` and the chart, like the
CRDs from the models.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from ferryman.api.common import (
    GROUP,
    ApiModel,
    ObjectMeta,
    ShortStr,
    cel,
    dns_label_rule,
    newest_items,
    rules,
)

KIND = "ModelApproval"
PLURAL = "modelapprovals"

MAX_APPROVAL_GROUPS = 16
MAX_APPROVERS = 16  # names kept in status.approval.approvedBy (the count is exact)
MAX_REQUIRED = 100
MAX_COMMENT = 1024
MAX_USERNAME = 253
ROLLOUT_NAME_MAX = 63
VERSION_MAX = 128

IMMUTABLE_MESSAGE = (
    "ModelApproval spec is immutable: an approval cannot be edited; delete it and create a new one"
)

POLICY_NAME = f"{PLURAL}.{GROUP}"
# The policy's message: which rule failed, with the identity the API server saw.
POLICY_MESSAGE = (
    "'ModelApproval spec.approvedBy must be your own username and spec.groups only groups "
    "you belong to: you are ' + request.userInfo.username + ' in groups [' + "
    "(has(request.userInfo.groups) ? request.userInfo.groups.join(', ') : '') + "
    "'], the approval claims ' + object.spec.approvedBy + ' in groups [' + "
    "(has(object.spec.groups) ? object.spec.groups.join(', ') : '') + ']'"
)


class ApprovalPoint(StrEnum):
    """Where the rollout waits for approvals."""

    BEFORE_TRAFFIC = "BeforeTraffic"  # before the candidate gets any traffic or mirror
    BEFORE_FULL = "BeforeFull"  # after the last step, before promotion to 100%


class ApprovalGate(ApiModel):
    """``spec.gates.approvals``: how many distinct people, of which groups, must approve
    the exact candidate version (ModelApprovals) before the rollout passes ``at``."""

    count: int = Field(
        1, ge=1, le=MAX_REQUIRED, description="Distinct approvers needed (default 1)."
    )
    groups: list[ShortStr] | None = Field(
        None,
        max_length=MAX_APPROVAL_GROUPS,
        description="An approval counts only if it claims (and the API server proved) at "
        "least one of these groups. Empty: any approval counts.",
    )
    at: ApprovalPoint = Field(
        ApprovalPoint.BEFORE_TRAFFIC,
        description="BeforeTraffic (default: before any traffic or mirror) or BeforeFull "
        "(after the last step, before promotion to 100%).",
    )


class ApprovalStatus(ApiModel):
    """``status.approval``: the approvals counted for the candidate version."""

    version: Annotated[str, Field(max_length=VERSION_MAX)] = Field(
        max_length=VERSION_MAX, description="The version the count is for."
    )
    required: int = Field(ge=0, le=MAX_REQUIRED, description="Approvals needed.")
    counted: int = Field(ge=0, description="Distinct approvers whose approvals count.")
    approved_by: Annotated[list[ShortStr] | None, newest_items(MAX_APPROVERS)] = Field(
        None, max_length=MAX_APPROVERS, description="Who they are (sorted; at most 16)."
    )
    awaiting_since: datetime | None = Field(
        None, description="When the rollout began waiting at the gate (None: not waiting)."
    )


class ModelApprovalSpec(ApiModel):
    """Who approved which version for which Rollout. Immutable once created."""

    model_config = ApiModel.model_config | ConfigDict(
        json_schema_extra=rules(cel("self == oldSelf", IMMUTABLE_MESSAGE))
    )

    rollout: str = Field(
        min_length=1,
        max_length=ROLLOUT_NAME_MAX,
        description="The Rollout (same namespace) whose candidate this approves.",
        json_schema_extra=rules(dns_label_rule("rollout")),
    )
    version: str = Field(
        min_length=1,
        max_length=VERSION_MAX,
        description="The exact candidate version approved (status.candidateVersion).",
    )
    approved_by: str = Field(
        min_length=1,
        max_length=MAX_USERNAME,
        description="The approver's username; the API server refuses any other than the "
        "creator's own (ValidatingAdmissionPolicy modelapprovals.ferryman.dev).",
    )
    groups: list[ShortStr] | None = Field(
        None,
        max_length=MAX_APPROVAL_GROUPS,
        description="Groups the approver claims to approve as; each must be one of the "
        "creator's groups.",
    )
    comment: str | None = Field(None, max_length=MAX_COMMENT, description="Free text.")


class ModelApproval(ApiModel):
    """An approval of one candidate version of a Rollout, by a user the API server proved
    (docs/approvals.md)."""

    api_version: str = Field("ferryman.dev/v1alpha1", max_length=64)
    kind: str = Field(KIND, max_length=64)
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelApprovalSpec


def policy_documents() -> dict[str, dict[str, Any]]:
    """File name -> the ValidatingAdmissionPolicy and its binding (one file, a list)."""
    # matchConstraints and validations are atomic for server-side apply: every field the
    # API server would default is written out, so that what is applied equals what is
    # stored and a second applier (helm --take-ownership after `kubectl apply
    # --server-side`) sees no conflict.
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": POLICY_NAME,
            "labels": {"app.kubernetes.io/part-of": "ferryman"},
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {},
                "objectSelector": {},
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE"],
                        "resources": [PLURAL],
                        "scope": "*",
                    }
                ],
            },
            "validations": [
                {
                    "expression": (
                        "object.spec.approvedBy == request.userInfo.username && "
                        "(!has(object.spec.groups) || object.spec.groups.all(g, "
                        "has(request.userInfo.groups) && g in request.userInfo.groups))"
                    ),
                    "messageExpression": POLICY_MESSAGE,
                    "reason": "Forbidden",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {
            "name": POLICY_NAME,
            "labels": {"app.kubernetes.io/part-of": "ferryman"},
        },
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
    return {
        f"{POLICY_NAME}-policy.yaml": policy,
        f"{POLICY_NAME}-binding.yaml": binding,
    }
