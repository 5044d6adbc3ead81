"""review13's repros against the real API server (issue 13's schema changes): each states
what must hold and fails today (``xfail(strict=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rollouts" / "canary-gatewayapi.yaml"


def dry_run_create(
    cluster: Cluster, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
) -> None:
    cluster.custom.create_namespaced_custom_object(
        group, version, namespace, plural, body, dry_run="All", field_validation="Strict"
    )


@pytest.mark.xfail(
    strict=True,
    reason="review13 R6: parentRefs maxItems lowered 16 -> 8 'for the pairwise rule's CEL "
    "cost', but this API server takes the same rule at 16 and 32 items (HTTPRoute: 32): "
    "a Rollout with 9 parentRefs, accepted before issue 13 and by the HTTPRoute, is refused",
)
def test_r6_nine_parent_refs_the_httproute_accepts_are_accepted(cluster: Cluster) -> None:
    ns = cluster.create_namespace("review13-r6")
    refs = [{"name": f"gateway-{i}"} for i in range(9)]
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-detector", "namespace": ns},
        "spec": {"parentRefs": refs, "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]},
    }
    # The HTTPRoute ferryman would write is valid: the test's precondition.
    dry_run_create(cluster, "gateway.networking.k8s.io", "v1", ns, "httproutes", route)
    rollout = yaml.safe_load(EXAMPLE.read_text())
    rollout["metadata"]["namespace"] = ns
    rollout["spec"]["trafficRouting"]["gatewayAPI"]["parentRefs"] = refs
    dry_run_create(cluster, "ferryman.dev", "v1alpha1", ns, "rollouts", rollout)
