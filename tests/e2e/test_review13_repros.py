"""review13's repros against the real API server (issue 13's schema changes): each states
what must hold and fails today (``xfail(strict=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config

from ferryman.api.rollout import PLURAL
from ferryman.cli.uninstall import FINALIZER, Uninstall
from harness import chart, rbac
from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rollouts" / "canary-gatewayapi.yaml"


def dry_run_create(
    cluster: Cluster, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
) -> None:
    cluster.custom.create_namespaced_custom_object(
        group, version, namespace, plural, body, dry_run="All", field_validation="Strict"
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


def test_r7_the_hooks_rbac_lets_uninstall_read_again_after_a_concurrent_change(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = cluster.create_namespace("review13-r7")
    hooks = [
        d for d in chart.render() if (d["metadata"].get("annotations") or {}).get("helm.sh/hook")
    ]
    (hook_rules,) = [d["rules"] for d in chart.find(hooks, "ClusterRole")]
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "r7", "namespace": ns}}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r7", "namespace": ns},
        "rules": hook_rules,  # the hook's rules on Rollouts/ModelVersions, here in one namespace
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "r7", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r7"},
        "subjects": [{"kind": "ServiceAccount", "name": "r7", "namespace": ns}],
    }
    who = rbac.provision(cluster, [sa, role, binding], kubeconfig=tmp_path / "r7.kubeconfig")
    rollout = yaml.safe_load(EXAMPLE.read_text())
    rollout["metadata"].update(namespace=ns, finalizers=[FINALIZER])
    cluster.custom.create_namespaced_custom_object("ferryman.dev", "v1alpha1", ns, PLURAL, rollout)
    name = rollout["metadata"]["name"]
    said: list[str] = []
    hook = Uninstall(config.new_client_from_config(config_file=str(who.kubeconfig)), said.append)
    (listed,) = hook._list(PLURAL, [ns]) or []
    other = "example.com/keep"
    # Another controller adds its finalizer between the hook's list and its patch.
    cluster.custom.patch_namespaced_custom_object(
        "ferryman.dev",
        "v1alpha1",
        ns,
        PLURAL,
        name,
        {"metadata": {"finalizers": [FINALIZER, other]}},
    )
    try:
        assert hook.release(PLURAL, listed)
        live: Any = cluster.custom.get_namespaced_custom_object(
            "ferryman.dev", "v1alpha1", ns, PLURAL, name
        )
        assert live["metadata"]["finalizers"] == [other]
    finally:
        cluster.custom.patch_namespaced_custom_object(
            "ferryman.dev", "v1alpha1", ns, PLURAL, name, {"metadata": {"finalizers": None}}
        )
