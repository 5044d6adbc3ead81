"""The Helm chart under test (charts/ferryman): rendering it with the cached helm, the
values that turn every optional feature on, and the prometheus-operator CRDs that its
ServiceMonitor and PrometheusRule are checked against.

The prometheus-operator CRDs come from its Go module (``go mod download``; the module
cache lives outside the repository, so a warm run costs nothing), never from a URL.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import localcluster
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ferryman"
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
MONITORING_CRDS = ("servicemonitors", "prometheusrules")


def helm_bin() -> str:
    """The helm built by ``make cluster-build``; AssertionError when it is missing."""
    path = localcluster.Binaries.from_cache().helm
    assert os.access(path, os.X_OK), f"helm not found at {path}: run `make cluster-build`"
    return str(path)


def helm(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def set_args(values: dict[str, Any] | None) -> list[str]:
    """``--set-json`` arguments for a values dict (top-level keys)."""
    out: list[str] = []
    for key, value in (values or {}).items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def render_text(
    values: dict[str, Any] | None = None,
    *,
    release: str = "ferryman",
    namespace: str = "ferryman-system",
    extra: tuple[str, ...] = (),
) -> str:
    """``helm template`` output (YAML stream) for these values."""
    return helm(
        "template", release, str(CHART), "--namespace", namespace, *set_args(values), *extra
    ).stdout


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "ferryman",
    namespace: str = "ferryman-system",
) -> list[dict[str, Any]]:
    """The rendered objects, parsed (empty documents dropped)."""
    text = render_text(values, release=release, namespace=namespace)
    return [d for d in yaml.safe_load_all(text) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def everything_on(watch: list[str]) -> dict[str, Any]:
    """Values with every optional feature on (namespaced scope over ``watch``)."""
    return {
        "image": {
            "repository": "registry.example.com/ml/ferryman",
            "tag": "0.1.0",
            "digest": "sha256:" + "ab" * 32,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "registry-creds"}],
        "rbac": {"create": True, "scope": "namespaced"},
        "watchNamespaces": watch,
        "serviceAccount": {"create": True, "name": "ferryman-op", "annotations": {"a": "b"}},
        "settings": {
            "providers": {
                "default": {
                    "address": "http://prometheus.monitoring:9090",
                    "secretName": "prom-token",
                },
                "thanos": {
                    "address": "https://thanos.monitoring:10902",
                    "secretName": "thanos-basic",
                    "timeoutSeconds": 10,
                    "insecureSkipVerify": False,
                    "caFile": "/etc/ssl/certs/ca-certificates.crt",
                },
            },
            "allowInlineAddresses": True,
            "storageInitializerImage": "registry.example.com/ml/storage-init:1.0.0",
        },
        "logFormat": "full",
        "metrics": {
            "address": "0.0.0.0",
            "port": 9000,
            "service": {"enabled": True, "port": 9090},
            "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
            "prometheusRule": {
                "enabled": True,
                "pausedForMinutes": 45,
                "labels": {"release": "prom"},
            },
        },
        "probes": {"address": "0.0.0.0", "port": 9081},
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "podLabels": {"team": "ml-platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        },
                    }
                ]
            }
        },
        "priorityClassName": "system-cluster-critical",
    }


def monitoring_crds() -> dict[str, dict[str, Any]]:
    """The ServiceMonitor and PrometheusRule CRDs (plural -> CRD document) from the
    prometheus-operator Go module at the pinned version, downloaded into the Go module
    cache on first use."""
    version = localcluster.read_versions()["PROMETHEUS_OPERATOR_VERSION"]
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{PROMETHEUS_OPERATOR_MODULE}@{version}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd="/",
    )
    info = json.loads(proc.stdout or "{}")
    assert proc.returncode == 0 and "Dir" in info, (
        f"go mod download {PROMETHEUS_OPERATOR_MODULE}@{version} failed: "
        f"{info.get('Error') or proc.stderr}"
    )
    crd_dir = Path(info["Dir"]) / "example" / "prometheus-operator-crd"
    out = {}
    for plural in MONITORING_CRDS:
        out[plural] = yaml.safe_load((crd_dir / f"monitoring.coreos.com_{plural}.yaml").read_text())
    return out
