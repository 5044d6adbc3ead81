"""The README's install and release commands, run as a new user would run them, on a
fresh local control plane of their own: nothing of ferryman installed, the chart from
this checkout in place of the published one.

Blocks are the README's ```sh blocks preceded by ``<!-- readme-test: NAME -->``; each runs
with ``bash -euo pipefail`` from the repository root, with the cluster's kubectl, helm and
the `kubectl ferryman` plugin on PATH. kwok makes the chart's operator Pod Ready but runs
no container, so between the two blocks the operator runs as a local process with
exactly what the Pod would have: the chart's ServiceAccount (a token from the TokenRequest
API), the chart's settings ConfigMap, and the release namespace."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from harness import rbac
from harness.clusters import fresh_cluster
from harness.kube import Cluster
from harness.operator import OperatorProcess
from harness.rbac import write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PUBLISHED_CHART = "oci://ghcr.io/ferryman-dev/charts/ferryman --version 0.1.0"
LOCAL_CHART = "./charts/ferryman"
MARK = re.compile(r"<!-- readme-test: (\S+) -->\n```sh\n(.*?)```", re.S)


def blocks() -> dict[str, str]:
    """{name: shell text} of the README's marked blocks, in order."""
    return {m.group(1): m.group(2) for m in MARK.finditer(README.read_text())}


def run_block(cluster: Cluster, name: str, text: str) -> None:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, (
        f"README block {name!r} failed ({proc.returncode}):\n{text}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


def test_readme_marks_the_install_and_release_blocks() -> None:
    found = blocks()
    assert list(found) == ["install", "release"], found
    assert PUBLISHED_CHART in found["install"], "the install block names the published chart"


def test_readme_install_and_release_on_a_fresh_cluster(tmp_path: Path) -> None:
    found = blocks()
    with fresh_cluster(tmp_path / "cluster") as cluster:
        run_block(cluster, "install", found["install"].replace(PUBLISHED_CHART, LOCAL_CHART))

        # What the chart's Pod would run: its identity, settings and namespace.
        namespace, name = "ferryman-system", "ferryman"
        token = cluster.kubectl("create", "token", name, "-n", namespace).stdout.strip()
        kubeconfig = tmp_path / "operator.kubeconfig"
        write_kubeconfig(cluster.kubeconfig, kubeconfig, token=token, user=f"{namespace}-{name}")
        cm = cluster.get_json("configmap", f"{name}-settings", namespace)
        assert cm is not None, "the chart installs its settings ConfigMap"
        settings = tmp_path / "settings.yaml"
        settings.write_text(cm["data"]["settings.yaml"])
        assert yaml.safe_load(settings.read_text())["providers"]["default"]["address"]
        operator = OperatorProcess(
            cluster,
            namespaces=[],
            log_dir=tmp_path / "logs",
            env={
                "KUBECONFIG": str(kubeconfig),
                "FERRYMAN_NAMESPACE": namespace,
                "FERRYMAN_METRICS_ADDRESS": "127.0.0.1",
            },
            args=[f"--settings={settings}"],
        ).start()
        try:
            run_block(cluster, "release", found["release"])
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- operator log\n{operator.log_tail()}") from None
        finally:
            operator.stop()
        status = (cluster.get_json("mro", "fraud-detector", "fraud") or {})["status"]
        assert status["stableVersion"] == "1.3.0", status
        # The chart's default mode (all namespaces) as its ServiceAccount, from this
        # cluster's own audit log: kopf's CRD scanning is granted and used (the main
        # suite's operators watch one namespace each: test_rbac_minimal allow-lists
        # these two grants because of this test), and nothing was refused.
        events = list(
            rbac.read_audit(
                tmp_path / "cluster" / "logs" / "audit.log",
                user=f"system:serviceaccount:{namespace}:{name}",
                since=rbac.parse_since("2000-01-01T00:00:00Z"),
            )
        )
        used = rbac.used(events)
        crds = "customresourcedefinitions"
        assert {
            ("list", "apiextensions.k8s.io", crds),
            ("watch", "apiextensions.k8s.io", crds),
        } <= used
        assert not rbac.denied(events), rbac.denied(events)
