"""The test harness's own logic that could silently go wrong."""

from __future__ import annotations

from pathlib import Path

import localcluster
import pytest

from harness.kube import NotATestCluster, check_test_context


def kubeconfig(tmp_path: Path, context: str) -> Path:
    path = tmp_path / "config"
    path.write_text(
        f"apiVersion: v1\nkind: Config\ncurrent-context: {context}\n"
        f"contexts: [{{name: {context}, context: {{cluster: c, user: u}}}}]\n"
    )
    return path


@pytest.mark.parametrize("context", ["kind-ferryman", "k3d-dev", "minikube", "ferryman-local"])
def test_guard_accepts_test_contexts(tmp_path: Path, context: str) -> None:
    assert check_test_context(kubeconfig(tmp_path, context)) == context


@pytest.mark.parametrize("context", ["prod-eu-1", "arn:aws:eks:eu-west-1:1:cluster/main", "gke_x"])
def test_guard_refuses_other_contexts(tmp_path: Path, context: str) -> None:
    with pytest.raises(NotATestCluster, match="FERRYMAN_TEST_ALLOW_CONTEXT"):
        check_test_context(kubeconfig(tmp_path, context))


def test_guard_allows_a_context_named_explicitly(tmp_path: Path) -> None:
    assert check_test_context(kubeconfig(tmp_path, "staging"), allow="staging") == "staging"
    with pytest.raises(NotATestCluster):
        check_test_context(kubeconfig(tmp_path, "staging"), allow="other")


def test_pinned_versions_are_in_the_supported_series() -> None:
    v = localcluster.read_versions()
    assert v["KUBERNETES_VERSION"].startswith(("v1.36.", "v1.35.", "v1.34."))
    assert v["ETCD_VERSION"].startswith("v3.6.")
    assert v["KWOK_VERSION"].startswith("v0.8.")
    assert v["HELM_VERSION"].startswith("v4.")
    assert v["GATEWAY_API_VERSION"].startswith("v1.6.")
    assert v["ISTIO_API_VERSION"].startswith("v1.30.")


def test_ports_are_distinct_and_loopback_only_node() -> None:
    ports = localcluster.Ports(base=20000).all()
    assert len(set(ports.values())) == len(ports)
    node = localcluster.node_manifest()
    addresses = node["status"]["addresses"]  # type: ignore[index]
    assert {"type": "InternalIP", "address": "127.0.0.1"} in addresses
    assert int(node["status"]["capacity"]["pods"]) >= 5000  # type: ignore[index]
    assert "taints" not in node["spec"]  # type: ignore[operator]


def test_ready_delay_is_never_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_POD_READY_DELAY_MS", "0")
    assert localcluster.ready_delay_ms() >= 50
    monkeypatch.delenv("FERRYMAN_POD_READY_DELAY_MS")
    assert localcluster.ready_delay_ms() == 1000


def test_pod_stages_exclude_the_sentinel_and_the_unready_annotation() -> None:
    ready = (localcluster.HERE / "stages" / "pod-ready.yaml").read_text()
    assert localcluster.NEVER_READY_MARKER in ready
    assert localcluster.UNREADY_ANNOTATION in ready
    assert "@READY_DELAY_MS@" in ready and "@READY_JITTER_MS@" in ready
    unready = (localcluster.HERE / "stages" / "pod-unready.yaml").read_text()
    assert localcluster.UNREADY_ANNOTATION in unready
