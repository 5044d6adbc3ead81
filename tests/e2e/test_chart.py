"""The Helm chart against the API server: rendered manifests pass ``kubectl apply
--dry-run=server`` (CEL, the server's schemas, PodSecurity ``restricted``); ``helm
install --wait`` brings the operator up (kwok makes its pod Ready without running it);
``helm upgrade`` with a changed setting replaces the pod; ``helm uninstall`` leaves the
CRDs and every ModelVersion; invalid values are refused with the schema's message.

Sharing the cluster: the CRDs are cluster-wide and every e2e session applies them with
server-side apply (``ferryman_crds``). Only the lifecycle test installs them through the
chart (``crds.install=true``, identical content, so harmless to tests running beside it);
helm refuses objects that carry another owner's metadata, so it installs with
``--take-ownership``; and without ``--force-conflicts``: helm 4 applies server-side,
and with equal content it shares the fields with the fixture's field manager (each xdist
worker's session re-applies them) instead of conflicting; afterwards it removes the
release-ownership annotations it left on the kept CRDs, so no later install finds them
owned by a release that no longer exists.
Every test uses its own release name and namespaces (never release ``ferryman`` in
``ferryman-system``: the RBAC tests' harness uses that identity).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import chart, rbac
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

HELM_OWNER_ANNOTATIONS = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> list[str]:
    """The ServiceMonitor and PrometheusRule CRDs (prometheus-operator's Go module),
    applied server-side; idempotent, and nothing else in the suite uses these kinds."""
    docs = list(chart.monitoring_crds().values())
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ferryman-chart-tests",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs),
    )
    names = [f"crd/{d['metadata']['name']}" for d in docs]
    cluster.wait_established(*names)
    return names


@pytest.fixture
def restricted_namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """Three fresh namespaces (install, and two to watch) that enforce and warn on
    Pod Security ``restricted``."""
    names = [cluster.create_namespace(f"chart-{i}") for i in range(3)]
    for name in names:
        cluster.kubectl(
            "label",
            "namespace",
            name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        )
    yield names
    for name in names:
        cluster.delete_namespace(name)


def _release() -> str:
    return f"fm-{uuid.uuid4().hex[:6]}"


@pytest.mark.usefixtures("ferryman_crds", "monitoring_crds")
@pytest.mark.parametrize("features", ["defaults", "everything-on"])
def test_rendered_manifests_pass_server_dry_run(
    cluster: Cluster, restricted_namespaces: list[str], features: str
) -> None:
    install_ns, *watch = restricted_namespaces
    values = chart.everything_on(watch) if features == "everything-on" else None
    text = chart.render_text(values, release=_release(), namespace=install_ns)
    kinds = {d["kind"] for d in yaml.safe_load_all(text) if d}
    if features == "everything-on":
        assert {"ServiceMonitor", "PrometheusRule", "Role", "RoleBinding"} <= kinds
    proc = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ferryman-chart-dry-run",
        "-f",
        "-",
        input=text,
    )
    assert "(server dry run)" in proc.stdout
    # PodSecurity warns on a workload whose pod template is not `restricted`.
    assert "Warning" not in proc.stderr, proc.stderr


INVALID: list[tuple[str, list[str], str]] = [
    ("negative replicas", ["--set", "replicas=-1"], "at '/replicas': minimum: got -1, want 0"),
    ("six replicas", ["--set", "replicas=6"], "at '/replicas': maximum: got 6, want 5"),
    (
        "lease of one second",
        ["--set", "leaderElection.leaseDurationSeconds=1"],
        "at '/leaderElection/leaseDurationSeconds': minimum: got 1, want 2",
    ),
    (
        "unknown rbac scope",
        ["--set", "rbac.scope=global"],
        "at '/rbac/scope': value must be one of 'cluster', 'namespaced'",
    ),
    (
        "provider without address",
        ["--set", "settings.providers.prom.secretName=prom-token"],
        "at '/settings/providers/prom': missing property 'address'",
    ),
    (
        "provider address without scheme",
        ["--set", "settings.providers.prom.address=prometheus:9090"],
        "at '/settings/providers/prom/address': 'prometheus:9090' does not match pattern",
    ),
    (
        "namespaced scope without namespaces",
        ["--set", "rbac.scope=namespaced"],
        "at '/watchNamespaces': minItems: got 0, want 1",
    ),
    (
        "bad log format",
        ["--set", "logFormat=text"],
        "at '/logFormat': value must be one of 'json', 'full'",
    ),
    ("bad probes port", ["--set", "probes.port=70000"], "at '/probes/port': maximum"),
    (
        "image without repository",
        ["--set", "image.repository=null"],
        "at '/image': missing property 'repository'",
    ),
    (
        "short digest",
        ["--set", "image.digest=sha256:abc"],
        "at '/image/digest': 'sha256:abc' does not match pattern",
    ),
    (
        "service monitor without service",
        [
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.service.enabled=false",
        ],
        "at '/metrics/service/enabled': value must be true",
    ),
    (
        "alerts without metrics",
        ["--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.port=0"],
        "at '/metrics/port': minimum: got 0, want 1",
    ),
    ("unknown key", ["--set", "replica=1"], "additional properties 'replica' not allowed"),
]


@pytest.mark.parametrize(("case", "args", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_values_are_refused_by_helm_install(
    cluster: Cluster, case: str, args: list[str], message: str
) -> None:
    release, namespace = _release(), f"chart-invalid-{uuid.uuid4().hex[:6]}"
    proc = cluster.helm(
        "install",
        release,
        str(chart.CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        *args,
        check=False,
    )
    assert proc.returncode != 0, f"{case}: helm install accepted it:\n{proc.stdout}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr
    # Refused before anything reached the cluster.
    assert cluster.get_json("namespace", namespace) is None
    assert cluster.helm("status", release, "--namespace", namespace, check=False).returncode != 0


def _pods(cluster: Cluster, namespace: str, release: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "json"
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _cluster_roles(cluster: Cluster, release: str) -> list[str]:
    out = cluster.kubectl(
        "get", "clusterroles", "-l", f"app.kubernetes.io/instance={release}", "-o", "name"
    ).stdout
    return out.split()


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _release_crds(cluster: Cluster, release: str) -> None:
    """Remove the ownership annotations this release left on the kept CRDs (only while
    they still name it: another release may have taken them over since)."""
    for path in sorted((chart.ROOT / "crds").glob("*.yaml")):
        name = path.name.removesuffix(".yaml")
        crd = cluster.get_json("crd", name) or {}
        annotations = (crd.get("metadata") or {}).get("annotations") or {}
        if annotations.get("meta.helm.sh/release-name") == release:
            cluster.kubectl("annotate", "crd", name, *(f"{a}-" for a in HELM_OWNER_ANNOTATIONS))


@pytest.mark.usefixtures("ferryman_crds")
def test_install_upgrade_uninstall(cluster: Cluster, restricted_namespaces: list[str]) -> None:
    namespace, models, _ = restricted_namespaces
    release = _release()
    fullname = f"{release}-ferryman"
    installed = False
    try:
        proc = cluster.helm(
            "install",
            release,
            str(chart.CHART),
            "--namespace",
            namespace,
            "--take-ownership",
            "--wait",
            "--timeout",
            "120s",
        )
        installed = True
        assert "rollout status deployment/" + fullname in proc.stdout  # NOTES
        dep = cluster.get_json("deployment", fullname, namespace)
        assert dep is not None and dep["status"].get("readyReplicas") == 1
        assert _cluster_roles(cluster, release) != []
        (first,) = _pods(cluster, namespace, release)
        assert _ready(first)
        checksum = first["metadata"]["annotations"]["checksum/config"]
        for path in sorted((chart.ROOT / "crds").glob("*.yaml")):
            crd = cluster.get_json("crd", path.name.removesuffix(".yaml"))
            assert crd is not None
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release

        example = chart.ROOT / "examples" / "modelversions" / "fraud-detector.yaml"
        mvs = [d for d in yaml.safe_load_all(example.read_text()) if d]
        assert len(mvs) >= 2
        cluster.apply(example.read_text(), namespace=models)

        # An upgrade that changes nothing leaves the operator running (the checksum is
        # deterministic) ...
        cluster.helm(
            "upgrade",
            release,
            str(chart.CHART),
            "--namespace",
            namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            "120s",
        )
        assert [p["metadata"]["uid"] for p in _pods(cluster, namespace, release)] == [
            first["metadata"]["uid"]
        ]
        # ... a settings change gives a new pod (the checksum annotation changed).
        cluster.helm(
            "upgrade",
            release,
            str(chart.CHART),
            "--namespace",
            namespace,
            "--reuse-values",
            "--set",
            "settings.allowInlineAddresses=true",
            "--wait",
            "--timeout",
            "120s",
        )
        cm = cluster.get_json("configmap", f"{fullname}-settings", namespace)
        assert cm is not None and "allowInlineAddresses: true" in cm["data"]["settings.yaml"]

        def replaced() -> dict[str, Any] | None:
            pods = _pods(cluster, namespace, release)
            if len(pods) == 1 and pods[0]["metadata"]["uid"] != first["metadata"]["uid"]:
                return pods[0] if _ready(pods[0]) else None
            return None

        second = wait_for(replaced, timeout=60, interval=0.5, message="a new Ready operator pod")
        assert second["metadata"]["annotations"]["checksum/config"] != checksum

        cluster.helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s")
        installed = False
        assert cluster.get_json("deployment", fullname, namespace) is None
        assert _cluster_roles(cluster, release) == []
        for path in sorted((chart.ROOT / "crds").glob("*.yaml")):
            assert cluster.get_json("crd", path.name.removesuffix(".yaml")) is not None
        for mv in mvs:
            kept = cluster.get_json("modelversion", mv["metadata"]["name"], models)
            assert kept is not None and kept["spec"] == mv["spec"]
    finally:
        if installed:
            cluster.helm("uninstall", release, "--namespace", namespace, check=False)
        _release_crds(cluster, release)


def test_operator_runs_with_the_charts_args_and_settings(
    cluster: Cluster,
    operator_factory: Callable[..., OperatorProcess],
    namespace: str,
    tmp_path: Path,
) -> None:
    """The container's args and the settings ConfigMap, as rendered, run the real
    operator (as a local process: endpoints moved to 127.0.0.1 and free ports): it takes
    the Lease (leader election is on), its liveness endpoint answers where --liveness
    says, metrics are served where the settings file says, and it logs JSON as logFormat
    says."""
    op = operator_factory()
    values = {
        "watchNamespaces": [namespace],
        "probes": {"address": "127.0.0.1", "port": op.liveness_port},
        "metrics": {"address": "127.0.0.1", "port": op.metrics_port},
        "settings": {"providers": {"default": {"address": "http://127.0.0.1:1"}}},
    }
    docs = chart.render(values)
    (dep,) = chart.find(docs, "Deployment")
    (cm,) = chart.find(docs, "ConfigMap")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(cm["data"]["settings.yaml"])
    args = [a for a in container["args"] if not a.startswith("--namespace=")]
    assert [a for a in container["args"] if a.startswith("--namespace=")] == [
        f"--namespace={namespace}"
    ]  # the harness passes the same namespace itself
    assert f"--liveness={op.liveness_url}" in args
    op.args = [f"--settings={settings_file}" if a.startswith("--settings=") else a for a in args]
    op.extra_env["FERRYMAN_NAMESPACE"] = namespace  # the downward API's value
    op.extra_env["POD_NAME"] = f"{namespace}-operator"
    # The release namespace is the test's here: its Lease, and the chart's Lease Role
    # there for the operator's ServiceAccount (the one the e2e suite runs as).
    (role,) = [
        x for x in chart.find(docs, "Role") if x["metadata"]["name"].endswith("-leader-election")
    ]
    role["metadata"] = {"name": role["metadata"]["name"], "namespace": namespace}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": role["metadata"],
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": rbac.RELEASE, "namespace": rbac.OPERATOR_NAMESPACE}
        ],
    }
    cluster.apply([role, binding])
    op.start()  # waits for the liveness endpoint
    lease = wait_for(
        lambda: cluster.get_json("lease", "ferryman-leader", namespace),
        timeout=30,
        message="the operator takes the chart's Lease",
    )
    assert lease["spec"]["holderIdentity"] == f"{namespace}-operator"

    def metrics() -> bytes | None:
        try:
            with urllib.request.urlopen(op.metrics_url, timeout=5) as resp:
                return bytes(resp.read()) if resp.status == 200 else None
        except OSError:
            return None  # kopf's startup serves it just after the Lease is taken

    assert b"ferryman_" in wait_for(metrics, timeout=30, message="metrics served")
    lines = [line for line in op.log_path.read_text().splitlines() if line.strip()]
    assert lines, "the operator logged nothing"
    assert all(json.loads(line) for line in lines[:5])
