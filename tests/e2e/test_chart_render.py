"""The Helm chart rendered offline (``helm lint``/``helm template``, no API server):
CRDs equal to crds/, the Deployment's security and probes, the settings the operator
reads, the checksum that restarts it, offline schema validation, the alert rules under
promtool, and NOTES.

Offline validation uses ``kubernetes-validate`` (PyPI; it ships the Kubernetes JSON
schemas, so it costs one pip install, against kubeconform's Go build plus a schema set to
produce) for built-in kinds, and the ServiceMonitor/PrometheusRule CRD schemas from the
prometheus-operator Go module for those two. test_chart.py applies the same renders to the
API server with ``--dry-run=server``.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import localcluster
import pytest
import yaml

from ferryman import settings as operator_settings
from harness import chart
from harness.chart import find, render

# kubernetes-validate's schemas for the local control plane's minor version.
K8S_SCHEMA_VERSION = ".".join(
    [*localcluster.read_versions()["KUBERNETES_VERSION"].lstrip("v").split(".")[:2], "0"]
)
WATCH = ["team-a", "team-b"]


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's OpenAPI schema as JSON schema that also refuses unknown fields (the API
    server prunes them silently; a typo in the chart would go unnoticed)."""
    out = copy.deepcopy(schema)
    stack = [out]
    while stack:
        node = stack.pop()
        props = node.get("properties")
        if (
            isinstance(props, dict)
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            if isinstance(value, dict):
                stack.append(value)
                stack.extend(v for v in value.values() if isinstance(v, dict))
            elif isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, dict))
    return out


def validate_offline(docs: list[dict[str, Any]]) -> list[str]:
    """Every rendered object against its schema; the kinds validated."""
    monitoring = {
        c["spec"]["names"]["kind"]: _strict(c["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        for c in chart.monitoring_crds().values()
    }
    kinds = []
    for doc in docs:
        if doc["kind"] in monitoring:
            jsonschema.Draft7Validator(monitoring[doc["kind"]]).validate(doc)
        else:
            kubernetes_validate.validate(doc, K8S_SCHEMA_VERSION, strict=True)
        kinds.append(doc["kind"])
    return kinds


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = find(docs, "Deployment")
    return dep


def _settings_text(docs: list[dict[str, Any]]) -> str:
    (cm,) = find(docs, "ConfigMap")
    text: str = cm["data"]["settings.yaml"]
    return text


def test_helm_lint_strict_with_defaults_and_everything_on() -> None:
    chart.helm("lint", "--strict", str(chart.CHART))
    everything = chart.set_args(chart.everything_on(WATCH))
    chart.helm("lint", "--strict", str(chart.CHART), *everything)


def test_chart_crds_equal_crds_dir_except_annotations_and_labels() -> None:
    docs = find(render(), "CustomResourceDefinition")
    on_disk = {
        p.name: yaml.safe_load(p.read_text()) for p in sorted((chart.ROOT / "crds").glob("*.yaml"))
    }
    assert sorted(d["metadata"]["name"] + ".yaml" for d in docs) == sorted(on_disk)
    for doc in docs:
        source = on_disk[doc["metadata"]["name"] + ".yaml"]
        rendered_meta = doc.pop("metadata")
        source_meta = source.pop("metadata")
        assert doc == source, f"{source_meta['name']}: rendered CRD differs from crds/"
        assert rendered_meta["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert source_meta["labels"].items() <= rendered_meta["labels"].items()
        assert rendered_meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert set(rendered_meta) == {"name", "labels", "annotations"}


def test_crds_follow_install_and_keep() -> None:
    assert (
        find(render({"crds": {"install": False, "keep": True}}), "CustomResourceDefinition") == []
    )
    loose = find(render({"crds": {"install": True, "keep": False}}), "CustomResourceDefinition")
    assert len(loose) == 3
    assert all("annotations" not in d["metadata"] for d in loose)


def test_chart_approval_policy_equals_crds_policies() -> None:
    """The ModelApproval admission policy and binding ship with the CRDs, unchanged."""
    on_disk = [
        yaml.safe_load(p.read_text())
        for p in sorted((chart.ROOT / "crds" / "policies").glob("*.yaml"))
    ]
    assert on_disk
    rendered = render()
    for source in on_disk:
        docs = [
            d
            for d in find(rendered, source["kind"])
            if d["metadata"]["name"] == source["metadata"]["name"]
        ]
        assert len(docs) == 1, source["kind"]
        doc = docs[0]
        assert doc["spec"] == source["spec"]
        assert doc["apiVersion"] == source["apiVersion"]
    off = render({"crds": {"install": False}})
    assert find(off, "ValidatingAdmissionPolicy") == []
    assert find(off, "ValidatingAdmissionPolicyBinding") == []


def test_rendered_objects_validate_offline() -> None:
    assert {
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
    } <= set(validate_offline(render()))
    kinds = validate_offline(render(chart.everything_on(WATCH)))
    assert {"PrometheusRule", "ServiceMonitor", "Role", "RoleBinding"} <= set(kinds)


def test_offline_validation_catches_a_wrong_field() -> None:
    """The offline check is not vacuous: a typo in a field is refused for both kinds of
    schema."""
    docs = render(chart.everything_on(WATCH))
    dep = copy.deepcopy(_deployment(docs))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_SCHEMA_VERSION, strict=True)
    (monitor,) = find(docs, "ServiceMonitor")
    monitor = copy.deepcopy(monitor)
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate_offline([monitor])


def test_deployment_rolls_under_leader_election_restricted_and_probed() -> None:
    docs = render()
    dep = _deployment(docs)
    # Leader election is on by default: the new pod starts as a standby before the old
    # one stops (and releases the Lease).
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ferryman"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert container["image"] == "ghcr.io/ferryman-dev/ferryman:0.1.0"
    # kopf serves its liveness endpoint at the URL's path: /healthz on the probes port.
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]
    assert "--settings=/etc/ferryman/settings.yaml" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--namespace")]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "probes"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8000, "probes": 8081}
    assert {
        "name": "FERRYMAN_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container["env"]
    # The Lease holder identity and User-Agent: the pod's name.
    assert {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    } in container["env"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_without_leader_election_one_pod_is_recreated() -> None:
    docs = render({"leaderElection": {"enabled": False}})
    assert _deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}
    assert not [r for r in find(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicas": 2, "leaderElection": {"enabled": False}},
            "replicas 2 needs leaderElection.enabled",
        ),
        (
            {"leaderElection": {"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10}},
            "leaseDurationSeconds must be greater than renewDeadlineSeconds",
        ),
        (
            {"leaderElection": {"retryPeriodSeconds": 9}},
            "renewDeadlineSeconds must be greater than 1.2 x retryPeriodSeconds",
        ),
    ],
)
def test_inconsistent_leader_election_values_are_refused(
    values: dict[str, Any], message: str
) -> None:
    proc = chart.helm(
        "template", "ferryman", str(chart.CHART), *chart.set_args(values), check=False
    )
    assert proc.returncode != 0, proc.stdout[:200]
    assert message in proc.stderr, proc.stderr


def test_deployment_with_everything_on() -> None:
    dep = _deployment(render(chart.everything_on(WATCH)))
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The digest wins over the tag.
    assert container["image"] == "registry.example.com/ml/ferryman@sha256:" + "ab" * 32
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["serviceAccountName"] == "ferryman-op"
    assert [a for a in container["args"] if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    assert "--liveness=http://0.0.0.0:9081/healthz" in container["args"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    meta = dep["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "ml-platform"
    assert meta["annotations"]["example.com/owner"] == "ml-platform"
    (svc,) = find(render(chart.everything_on(WATCH)), "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_settings_configmap_is_what_the_operator_loads(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(_settings_text(render()))
    loaded = operator_settings.load(path, environ={"FERRYMAN_NAMESPACE": "ferryman-system"})
    assert loaded.providers == {}
    assert loaded.allow_inline_addresses is False
    # "" -> the operator image of the same version.
    assert loaded.storage_initializer_image == "ghcr.io/ferryman-dev/ferryman:0.1.0"
    assert (loaded.metrics_address, loaded.metrics_port) == ("0.0.0.0", 8000)
    assert loaded.json_logs is True
    assert loaded.namespace == "ferryman-system"
    le = loaded.leader_election
    assert (le.enabled, le.lease_name, le.namespace) == (True, "ferryman-leader", None)
    timings = (le.lease_duration_seconds, le.renew_deadline_seconds, le.retry_period_seconds)
    assert timings == (10, 7.0, 2.0)

    values = chart.everything_on(WATCH)
    path.write_text(_settings_text(render(values)))
    loaded = operator_settings.load(path, environ={})
    assert loaded.model_dump(by_alias=True, exclude_defaults=True)["providers"] == {
        "default": {"address": "http://prometheus.monitoring:9090", "secretName": "prom-token"},
        "thanos": {
            "address": "https://thanos.monitoring:10902",
            "secretName": "thanos-basic",
            "timeoutSeconds": 10.0,
            "caFile": "/etc/ssl/certs/ca-certificates.crt",
        },
    }
    assert loaded.allow_inline_addresses is True
    assert loaded.storage_initializer_image == "registry.example.com/ml/storage-init:1.0.0"
    assert (loaded.metrics_address, loaded.metrics_port) == ("0.0.0.0", 9000)
    assert loaded.json_logs is False

    # Without a storage-initializer image of its own, the digest-pinned operator image.
    values["settings"]["storageInitializerImage"] = ""
    path.write_text(_settings_text(render(values)))
    assert operator_settings.load(path, environ={}).storage_initializer_image == (
        "registry.example.com/ml/ferryman@sha256:" + "ab" * 32
    )


def _checksum(values: dict[str, Any] | None) -> str:
    meta = _deployment(render(values))["spec"]["template"]["metadata"]
    checksum: str = meta["annotations"]["checksum/config"]
    return checksum


def test_checksum_follows_the_settings_and_nothing_else() -> None:
    base = _checksum(None)
    assert len(base) == 64
    assert _checksum({"settings": {"allowInlineAddresses": True}}) != base
    assert _checksum({"logFormat": "full"}) != base
    assert _checksum({"metrics": {"port": 9100}}) != base
    assert _checksum({"podLabels": {"team": "x"}, "replicas": 0}) == base


def _bound_roles(docs: list[dict[str, Any]], sa: str) -> set[tuple[str, str | None, str]]:
    """(kind, namespace, name) of the Roles/ClusterRoles bound to ServiceAccount ``sa``."""
    out = set()
    for binding in find(docs, "RoleBinding") + find(docs, "ClusterRoleBinding"):
        if any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in binding["subjects"]):
            ref = binding["roleRef"]
            ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
            out.add((ref["kind"], ns, ref["name"]))
    return out


def test_rbac_scope_and_provider_secrets_render() -> None:
    """Contract-level checks only (the RBAC tests own the rules themselves): the scope
    decides where the rules live, and Secrets are readable only by name."""
    cluster_docs = render()
    bound = _bound_roles(cluster_docs, "ferryman")
    assert any(kind == "ClusterRole" for kind, _ns, _name in bound)
    # The one namespaced Role of the cluster scope: the Lease, in the release namespace,
    # read and renewed by name only.
    (lease_role,) = [d for d in find(cluster_docs, "Role") if not _hook(d)]
    assert ("Role", "ferryman-system", "ferryman-leader-election") in bound
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["ferryman-leader"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]

    docs = render(chart.everything_on(WATCH))
    bound = _bound_roles(docs, "ferryman-op")
    for ns in WATCH:
        assert any(kind == "Role" and n == ns for kind, n, _name in bound), ns
    secret_rules = [
        rule
        for role in find(docs, "Role") + find(docs, "ClusterRole")
        for rule in role["rules"]
        if "secrets" in rule.get("resources", []) or "*" in rule.get("resources", [])
    ]
    assert secret_rules, "no rule lets the operator read its provider Secrets"
    for rule in secret_rules:
        assert rule["resources"] == ["secrets"]
        assert sorted(rule["resourceNames"]) == ["prom-token", "thanos-basic"]
        assert rule["verbs"] == ["get"]


def test_metrics_service_and_monitor() -> None:
    assert find(render({"metrics": {"port": 0}}), "Service") == []
    docs = render(chart.everything_on(WATCH))
    (svc,) = find(docs, "Service")
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= svc["metadata"]["labels"].items()
    # honorLabels: the metrics' own `namespace` (the Rollout's) survives the scrape.
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}
    ]
    pod_labels = _deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


PROMTOOL_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # A first rollback at minute 3 (the counter series is born with it), a second one
      # at minute 150.
      - series: 'ferryman_rollbacks_total{namespace="ml",rollout="fraud",reason="analysis"}'
        values: '_ _ _ 1x146 2x150'
      # Paused by an inconclusive analysis since t=0; another Rollout paused for a step.
      - series: >-
          ferryman_rollout_paused_since_timestamp_seconds{namespace="ml", rollout="fraud",
          reason="Inconclusive"}
        values: '0x100'
      - series: >-
          ferryman_rollout_paused_since_timestamp_seconds{namespace="ml", rollout="churn",
          reason="Step"}
        values: '0x100'
      # The operator is scraped for 10 minutes, then is down.
      - series: 'up{job="ferryman-metrics",namespace="ferryman-system"}'
        values: '1x10 0x100'
    alert_rule_test:
      - {eval_time: 2m, alertname: FerrymanRolloutRolledBack, exp_alerts: []}
      - eval_time: 5m
        alertname: FerrymanRolloutRolledBack
        exp_alerts:
          - exp_labels: {namespace: ml, rollout: fraud, reason: analysis, severity: warning}
            exp_annotations:
              summary: Rollout ml/fraud rolled back (analysis) in the last hour
              description: See `kubectl ferryman history fraud --namespace ml`.
      - {eval_time: 100m, alertname: FerrymanRolloutRolledBack, exp_alerts: []}
      - eval_time: 155m
        alertname: FerrymanRolloutRolledBack
        exp_alerts:
          - exp_labels: {namespace: ml, rollout: fraud, reason: analysis, severity: warning}
            exp_annotations:
              summary: Rollout ml/fraud rolled back (analysis) in the last hour
              description: See `kubectl ferryman history fraud --namespace ml`.
      - {eval_time: 29m, alertname: FerrymanRolloutPausedForAnalysis, exp_alerts: []}
      - eval_time: 31m
        alertname: FerrymanRolloutPausedForAnalysis
        exp_alerts:
          - exp_labels: {namespace: ml, rollout: fraud, reason: Inconclusive, severity: warning}
            exp_annotations:
              summary: Rollout ml/fraud paused by analysis (Inconclusive) for more than 30 minutes
              description: >-
                See `kubectl ferryman status fraud --namespace ml`,
                then promote, retry or abort it.
      - {eval_time: 9m, alertname: FerrymanOperatorDown, exp_alerts: []}
      - {eval_time: 13m, alertname: FerrymanOperatorDown, exp_alerts: []}
      - eval_time: 20m
        alertname: FerrymanOperatorDown
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: The ferryman operator in ferryman-system is down or not scraped
              description: >-
                No Rollout progresses or rolls back while it is down. See
                `kubectl --namespace ferryman-system get pods
                -l app.kubernetes.io/instance=ferryman`.
"""


def test_alert_rules_fire_when_they_should_under_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(promtool).exists(), "promtool not found (Debian's prometheus package: make deps)"
    (rule,) = find(render({"metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / "tests.yaml").write_text(PROMTOOL_TESTS)
    for args in (["check", "rules", "rules.yaml"], ["test", "rules", "tests.yaml"]):
        proc = subprocess.run(
            [promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"


def test_paused_alert_threshold_follows_the_value() -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, "pausedForMinutes": 45}}}
    (rule,) = find(render(values), "PrometheusRule")
    (paused,) = [
        r
        for r in rule["spec"]["groups"][0]["rules"]
        if r["alert"] == "FerrymanRolloutPausedForAnalysis"
    ]
    assert paused["expr"].strip().endswith("> 2700")


def test_notes_name_the_next_three_commands() -> None:
    out = chart.helm(
        "install",
        "ferryman",
        str(chart.CHART),
        "--namespace",
        "ferryman-system",
        "--dry-run=client",
    ).stdout
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl --namespace ferryman-system rollout status deployment/ferryman" in notes
    assert "kubectl apply --namespace <your-namespace> -f examples/modelversions/" in notes
    assert "kubectl ferryman status fraud-detector --namespace <your-namespace> --watch" in notes
    for path in (
        "examples/modelversions/fraud-detector.yaml",
        "examples/rollouts/canary-service.yaml",
    ):
        assert path in notes and (chart.ROOT / path).exists()


def test_an_ipv6_probe_address_is_bracketed_in_the_liveness_url() -> None:
    (container,) = _deployment(render({"probes": {"address": "::", "port": 8081}}))["spec"][
        "template"
    ]["spec"]["containers"]
    assert "--liveness=http://[::]:8081/healthz" in container["args"]


def _hook(doc: dict[str, Any]) -> str | None:
    return (doc["metadata"].get("annotations") or {}).get("helm.sh/hook")


def test_uninstall_hook_runs_the_uninstall_command_with_its_own_least_rbac() -> None:
    """The pre-delete hook (templates/uninstall-hook.yaml): every object of it a hook,
    deleted once it succeeded; the Job runs ``kubectl ferryman uninstall`` on the watched
    namespaces after stopping the operator; its RBAC is the finalizer patch and the
    operator's scale, nothing else."""
    docs = render()
    hooks = [d for d in docs if _hook(d)]
    assert sorted(d["kind"] for d in hooks) == sorted(
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Job",
        ]
    )
    for doc in hooks:
        annotations = doc["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    (job,) = find(hooks, "Job")
    assert int(job["metadata"]["annotations"]["helm.sh/hook-weight"]) > max(
        int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in hooks if d is not job
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["kubectl-ferryman"]
    assert container["args"] == [
        "uninstall",
        "--all-namespaces",
        "--stop-operator=ferryman-system/ferryman",
    ]
    sa = job["spec"]["template"]["spec"]["serviceAccountName"]
    rules = [
        (tuple(rule["resources"]), tuple(rule["verbs"]), tuple(rule.get("resourceNames", [])))
        for role in find(hooks, "Role") + find(hooks, "ClusterRole")
        for rule in role["rules"]
    ]
    assert sorted(rules) == [
        (("deployments",), ("get",), ("ferryman",)),
        (("deployments/scale",), ("patch",), ("ferryman",)),
        (("pods",), ("list",), ()),
        (("rollouts", "modelversions"), ("list", "get", "patch"), ()),
    ]
    assert {s["name"] for b in find(hooks, "RoleBinding") for s in b["subjects"]} == {sa}

    scoped = [d for d in render(chart.everything_on(WATCH)) if _hook(d)]
    (job,) = find(scoped, "Job")
    assert "--namespaces=team-a,team-b" in job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert find(scoped, "ClusterRole") == []
    assert {r["metadata"]["namespace"] for r in find(scoped, "Role")} == {
        *WATCH,
        "ferryman-system",
    }
    assert [d for d in render({"rbac": {"create": False}}) if _hook(d)] == []
