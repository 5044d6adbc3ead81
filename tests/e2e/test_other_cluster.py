"""The suite on a cluster it did not start: FERRYMAN_TEST_KUBECONFIG pointing at a second
local control plane (its own work directory and free port block, harness.clusters), whose
kwok controls the suite must then not rely on. Collected with and without the setting,
exactly the tests marked ``kwok`` or ``audit_log`` go missing, and pytest counts them as
deselected (never skipped); a real run there passes an unmarked rollout test, with
FERRYMAN_TEST_MODEL_IMAGE reaching the model Deployments, and deselects the marked
tests of the file it also names.

``test_model_image_reaches_the_served_deployment`` is also an ordinary e2e test of the
session's cluster (with the fictional image, or the real one on kind)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LOCAL_PLANE_MARKERS, TEST_KUBECONFIG_ENV
from e2e import rollouts as r
from harness.clusters import fresh_cluster
from harness.images import MODEL_IMAGE_ENV, model_image
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
THIS = "tests/e2e/test_other_cluster.py"
LOCAL_CLUSTER_FILE = "tests/e2e/test_local_cluster.py"
PROBE_IMAGE = "registry.example/ferryman-test-model-server:probe"
# Tests the markers must cover, whatever else is marked: one per kind of reliance.
KNOWN_LOCAL_ONLY = {
    "tests/e2e/test_local_cluster.py::test_deployment_becomes_available_after_the_readiness_delay",
    "tests/e2e/test_local_cluster.py::test_sentinel_image_pod_never_becomes_ready",
    "tests/e2e/test_local_cluster.py::test_ready_pod_made_unready_and_back",
    "tests/e2e/test_api_requests.py::test_a_canary_rollout_costs_a_bounded_number_of_requests",
}
SUMMARY = re.compile(r"^(?:(\d+)/)?(\d+) tests? collected(?: \((\d+) deselected\))?", re.M)


def test_model_image_reaches_the_served_deployment(
    cluster: Cluster, namespace: str, operator: OperatorProcess, ferryman_crds: list[str]
) -> None:
    cluster.apply(r.versions("1.0.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy",
        timeout=120,
        message="Healthy on 1.0.0",
    )
    dep = cluster.get_json("deployment", "fraud-1-0-0", namespace)
    assert dep is not None
    (server,) = dep["spec"]["template"]["spec"]["containers"]
    assert server["image"] == model_image()
    assert dep["status"].get("readyReplicas") == 2


def pytest_env(kubeconfig: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for a nested pytest: no xdist worker identity, the
    given cluster (or none: the local control plane) and ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "FERRYMAN_TEST_")) or k == "PYTEST_ADDOPTS"
    }
    if kubeconfig is not None:
        env[TEST_KUBECONFIG_ENV] = str(kubeconfig)
    return {**env, **extra}


def nested_pytest(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``pytest *args`` in a new process (no xdist, no cache), output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def collected(proc: subprocess.Popen[str]) -> tuple[set[str], int]:
    """(node ids, number deselected) of a finished ``pytest --collect-only -q``."""
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    ids = {line for line in out.splitlines() if line.startswith("tests/e2e/")}
    found = SUMMARY.search(out)
    assert found, out
    assert int(found.group(1) or found.group(2)) == len(ids), out
    return ids, int(found.group(3) or 0)


@pytest.fixture
def other_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path / "cluster") as c:
        yield c


def test_on_another_cluster_only_the_marked_are_deselected_and_an_unmarked_one_passes(
    other_cluster: Cluster, tmp_path: Path
) -> None:
    # The three collections in parallel (a few CPU-seconds each), then the real run
    # (mostly waiting on the cluster, but its operator must start within 30 s).
    local, there_env = pytest_env(), pytest_env(other_cluster.kubeconfig)
    procs = [
        nested_pytest("--collect-only", "-q", "tests/e2e", *args, env=env)
        for env, args in (
            (local, ["-m", " or ".join(LOCAL_PLANE_MARKERS)]),
            (local, []),
            (there_env, []),
        )
    ]
    try:
        (marked, _), (here, deselected_here), (there, deselected_there) = map(collected, procs)
        assert marked >= KNOWN_LOCAL_ONLY, KNOWN_LOCAL_ONLY - marked
        assert there <= here
        assert here - there == marked
        assert deselected_there == deselected_here + len(marked)

        run = nested_pytest(
            f"{THIS}::test_model_image_reaches_the_served_deployment",
            LOCAL_CLUSTER_FILE,
            "--basetemp",
            str(tmp_path / "nested"),
            env=pytest_env(other_cluster.kubeconfig, **{MODEL_IMAGE_ENV: PROBE_IMAGE}),
        )
        procs.append(run)
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0, out
        assert f"{TEST_KUBECONFIG_ENV}={other_cluster.kubeconfig}" in out
        # This file's rollout test and test_local_cluster.py's unmarked tests pass; its
        # marked ones (four today: they rely on kwok) are deselected.
        in_file = {i for i in here if i.startswith(LOCAL_CLUSTER_FILE + "::")}
        passed, deselected = 1 + len(in_file - marked), len(in_file & marked)
        assert deselected >= 3, in_file
        summary = out.strip().splitlines()[-1]
        assert re.search(rf"\b{passed} passed, {deselected} deselected\b", summary), summary
        assert "skipped" not in summary, summary
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
