"""``kubectl ferryman approve ROLLOUT [--comment TEXT]``: approve a Rollout's current
candidate version as yourself (docs/approvals.md).

Creates a ``ModelApproval`` naming the Rollout, the exact candidate version
(``status.candidateVersion``), the caller's username and the groups the approval claims.
The identity comes from a ``SelfSubjectReview`` (authentication.k8s.io/v1): the user and
groups the API server itself sees for these credentials, so the approval passes the
admission policy that checks them against ``request.userInfo`` (``api.approval``). The
groups claimed are those of the caller that the gate names (none when the gate names
none): a caller in none of them is told so instead of creating an approval that would
not count. The name is derived from (Rollout, version, user), so approving twice is
reported, not duplicated.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ferryman.api.approval import KIND, PLURAL, ApprovalGate
from ferryman.api.common import API_VERSION, GROUP, VERSION


class ApproveError(Exception):
    """An error for the user: printed, exit code 1."""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    a = sub.add_parser(
        "approve",
        parents=parents,
        help="approve a Rollout's current candidate version as yourself (ModelApproval)",
        description=(__doc__ or "").split("\n\n")[1],
    )
    a.add_argument("rollout")
    a.add_argument("--comment", default=None, help="why (kept in the ModelApproval)")


def name_for(rollout: str, version: str, user: str, attempt: datetime | None = None) -> str:
    """The ModelApproval's name: the Rollout's name and a digest of (version, user) and,
    after an earlier attempt at the version ended, of when it did
    (``plan.approvals.attempt_start``): approving a retried version is a new approval,
    since the old one no longer counts."""
    key = f"{version}\0{user}" + (f"\0{attempt.isoformat()}" if attempt else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{rollout}-{digest}"


def claimed(gate: ApprovalGate, groups: list[str]) -> list[str]:
    """The caller's groups the approval claims: those the gate names, in its order."""
    return [g for g in gate.groups or [] if g in groups]


def whoami(api_client: client.ApiClient) -> tuple[str, list[str]]:
    """(username, groups) as the API server sees the caller (SelfSubjectReview)."""
    review = client.AuthenticationV1Api(api_client).create_self_subject_review(
        client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
    )
    info = review.status.user_info if review.status is not None else None
    if info is None or not info.username:
        raise ApproveError("the API server did not say who you are (SelfSubjectReview)")
    return str(info.username), list(info.groups or [])


def manifest(
    name: str,
    namespace: str,
    rollout: str,
    version: str,
    user: str,
    groups: list[str],
    comment: str | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rollout": rollout, "version": version, "approvedBy": user}
    if groups:
        spec["groups"] = groups
    if comment:
        spec["comment"] = comment
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def approve(
    api: client.CustomObjectsApi,
    namespace: str,
    rollout: str,
    candidate: str | None,
    gate: ApprovalGate | None,
    comment: str | None,
    attempt: datetime | None = None,
) -> str:
    """Create the approval; the line to print. Raises ApproveError when there is nothing
    to approve, the caller's approval would not count, or it exists already (for this
    attempt at the version: ``attempt``, ``plan.approvals.attempt_start``)."""
    if gate is None:
        raise ApproveError(f"Rollout {rollout} has no approval gate (spec.gates.approvals)")
    if candidate is None:
        raise ApproveError(f"Rollout {rollout} has no candidate version to approve")
    user, groups = whoami(api.api_client)
    claims = claimed(gate, groups)
    if gate.groups and not claims:
        raise ApproveError(
            f"you are {user} in groups [{', '.join(groups)}]: none of the groups the gate "
            f"names ({', '.join(gate.groups)}), so your approval would not count"
        )
    name = name_for(rollout, candidate, user, attempt)
    body = manifest(name, namespace, rollout, candidate, user, claims, comment)
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as e:
        if e.status == 409:
            raise ApproveError(
                f"{user} already approved {candidate} of Rollout {rollout} "
                f"(modelapproval.{GROUP}/{name})"
            ) from e
        raise
    as_groups = f" as {', '.join(claims)}" if claims else ""
    return (
        f"modelapproval.{GROUP}/{name} created: {user}{as_groups} approves {candidate} of {rollout}"
    )
