"""The API server, not the operator, stops bad ModelVersions and Rollouts, with messages
that name the problem; and it accepts the valid edge cases."""

from __future__ import annotations

import copy

import pytest

from cases.api_cases import INVALID, VALID, Case, model_version, rollout
from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_manifest_is_rejected_with_a_message_naming_the_problem(
    cluster: Cluster, namespace: str, case: Case
) -> None:
    result = cluster.apply(case.manifest, namespace=namespace, check=False)
    assert result.returncode != 0, f"accepted: {case.name}"
    assert case.message in result.stderr, result.stderr
    kind = case.manifest["kind"].lower()
    assert cluster.get_json(kind, case.manifest["metadata"]["name"], namespace) is None


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_valid_edge_case_is_accepted(cluster: Cluster, namespace: str, case: Case) -> None:
    cluster.apply(case.manifest, namespace=namespace)
    kind = case.manifest["kind"].lower()
    stored = cluster.get_json(kind, case.manifest["metadata"]["name"], namespace)
    assert stored is not None
    assert stored["spec"] == case.manifest["spec"]  # nothing pruned or rewritten


def test_model_version_spec_is_immutable(cluster: Cluster, namespace: str) -> None:
    original = model_version(name="fraud-1-3-0")
    cluster.apply(original, namespace=namespace)
    edited = copy.deepcopy(original)
    edited["spec"]["serving"]["image"] = "ghcr.io/acme/onnx-server:2.5.0"
    result = cluster.apply(edited, namespace=namespace, check=False)
    assert result.returncode != 0
    assert "ModelVersion spec is immutable: register a new ModelVersion" in result.stderr
    stored = cluster.get_json("modelversion", "fraud-1-3-0", namespace)
    assert stored is not None
    assert stored["spec"]["serving"]["image"] == original["spec"]["serving"]["image"]
    # Metadata stays editable: labels are not part of the record.
    cluster.kubectl("label", "mv", "fraud-1-3-0", "team=risk", "-n", namespace)


def test_rollout_model_is_immutable_but_target_is_not(cluster: Cluster, namespace: str) -> None:
    manifest = rollout(name="fraud")
    cluster.apply(manifest, namespace=namespace)
    manifest["spec"]["target"] = {"version": "1.4.0"}
    cluster.apply(manifest, namespace=namespace)  # GitOps changes this line
    manifest["spec"]["model"] = "churn"
    result = cluster.apply(manifest, namespace=namespace, check=False)
    assert result.returncode != 0
    assert "model is immutable" in result.stderr
