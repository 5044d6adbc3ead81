"""kubectl and helm are the ones the project pins, and helm installs into this cluster."""

from __future__ import annotations

import json
from pathlib import Path

import localcluster

from e2e.workloads import available
from harness.images import model_image
from harness.kube import Cluster


def test_kubectl_and_server_versions_match_the_pins(cluster: Cluster) -> None:
    versions = localcluster.read_versions()
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["gitVersion"] == versions["KUBERNETES_VERSION"]
    server = out["serverVersion"]
    if cluster.local:
        assert server["gitVersion"] == versions["KUBERNETES_VERSION"]
    assert (int(server["major"]), int(server["minor"].rstrip("+"))) >= (1, 34)


def test_helm_version_matches_the_pin(cluster: Cluster) -> None:
    version = cluster.helm("version", "--template", "{{.Version}}").stdout.strip()
    assert version == localcluster.read_versions()["HELM_VERSION"]


def test_helm_install_wait_of_a_tiny_chart(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 2\n")
    (chart / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
        "spec:\n  replicas: {{ .Values.replicas }}\n"
        "  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n"
        "  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n"
        "    spec:\n      containers:\n"
        f"      - {{name: server, image: {model_image('registry.example/tiny:1')}}}\n"
    )
    cluster.helm("install", "tiny", str(chart), "-n", namespace, "--wait", "--timeout", "120s")
    # --wait returned only once the Deployment was available.
    assert available(cluster, "tiny", namespace) == 2
    releases = json.loads(cluster.helm("list", "-n", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("tiny", "deployed")]
    cluster.helm("uninstall", "tiny", "-n", namespace, "--wait")
    assert cluster.get_json("deployment", "tiny", namespace) is None
