"""review6: reproductions on the local control plane of faults found in the merged
"reading from kopf indexes" work (strict xfails: each passes once fixed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e import rollouts as r
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")


def test_review6_a_selector_key_added_to_the_live_service_is_removed(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    spec: dict[str, Any] = {"routing": r.SERVICE}
    cluster.apply(r.versions("1.0.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0", **spec), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=90, message="up")
    # The live Service now selects no pod: 100% of the traffic fails.
    patch = json.dumps({"spec": {"selector": {"x": "y"}}})
    cluster.kubectl("patch", "service", "fraud", "-n", ns, "--type=merge", "-p", patch)
    wait_for(
        lambda: (
            "x"
            not in ((cluster.get_json("service", "fraud", ns) or {}).get("spec") or {}).get(
                "selector", {"x": 1}
            )
        ),
        timeout=60,  # the edit's watch event wakes the Rollout: a second is plenty
        interval=0.5,
        message="the live Service's selector restored",
    )


def test_review6_a_budget_deleted_by_hand_is_written_again(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    cluster.apply(r.versions("1.0.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=90, message="up")
    assert cluster.get_json("pdb", "fraud-1-0-0", ns) is not None
    cluster.kubectl("delete", "pdb", "fraud-1-0-0", "-n", ns)
    wait_for(
        lambda: cluster.get_json("pdb", "fraud-1-0-0", ns) is not None,
        timeout=60,  # a deleted Service or Deployment is back within a second
        interval=0.5,
        message="the budget written again",
    )
