"""Fixtures shared by ferryman's tests.

- ``cluster`` (session): the local control plane, started once per session (or reused
  when ``make up`` already runs it; then it is left running), or the cluster of
  ``FERRYMAN_TEST_KUBECONFIG`` after a guard checks it is a test cluster.
- ``namespace``: a fresh namespace per test, deleted afterwards.
- ``operator``: ``python -m ferryman`` as a subprocess watching the test's namespace.
- ``prometheus`` (session): a real Prometheus on 127.0.0.1 scraping test exporters.
- ``operator_identity`` (session): the chart's ServiceAccount and cluster-scope RBAC,
  applied once for all xdist workers; every ``operator_factory`` process runs as it.

Tests marked ``after_suite`` (the RBAC-minimality check of the audit log) are deselected
unless pytest runs with ``--after-suite``, which selects only them: hack/run-tests.sh
runs them in a second invocation after a full-suite run.

Tests under ``tests/e2e`` are marked ``e2e`` automatically, so ``-m "not e2e"`` runs the
pure unit layer without any cluster.

Tests marked ``kwok`` (they rely on the local control plane's kwok pod stages: readiness
delay, never-ready image, unready annotation, fictional images made Ready) or
``audit_log`` (they read its API audit log) are deselected, and reported as deselected,
whenever ``FERRYMAN_TEST_KUBECONFIG`` names the cluster: kind, any real cluster, or even
another local control plane, whose controls the suite then does not rely on
(docs/development.md).

Tests under ``tests/gitops`` (real Argo CD; they must run inside a private network
namespace) are marked ``e2e`` and ``gitops`` and deselected unless pytest runs with
``--gitops``, which selects only them: hack/run-tests.sh runs them through hack/netns.sh
after a full-suite run (``make gitops`` alone).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import localcluster
import pytest

from harness import rbac
from harness.dataplane import DataPlane
from harness.kube import Cluster, open_cluster
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

E2E_DIR = Path(__file__).parent / "e2e"
GITOPS_DIR = Path(__file__).parent / "gitops"
# Markers of tests that need the local control plane this suite starts itself.
LOCAL_PLANE_MARKERS = ("kwok", "audit_log")
TEST_KUBECONFIG_ENV = "FERRYMAN_TEST_KUBECONFIG"


def needs_local_plane(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) is not None for m in LOCAL_PLANE_MARKERS)


def pytest_report_header(config: pytest.Config) -> str | None:
    given = os.environ.get(TEST_KUBECONFIG_ENV)
    if not given:
        return None
    return (
        f"{TEST_KUBECONFIG_ENV}={given}: tests marked {' or '.join(LOCAL_PLANE_MARKERS)} "
        "are deselected (they need the local control plane)"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--after-suite",
        action="store_true",
        help="run only the tests marked after_suite (they read what the whole suite did)",
    )
    parser.addoption(
        "--gitops",
        action="store_true",
        help="run only the tests under tests/gitops (real Argo CD; inside hack/netns.sh)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
        if GITOPS_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.gitops)
    after = config.getoption("--after-suite")
    gitops = config.getoption("--gitops")
    keep = [
        i
        for i in items
        if (i.get_closest_marker("after_suite") is not None) == after
        and (i.get_closest_marker("gitops") is not None) == gitops
    ]
    if os.environ.get(TEST_KUBECONFIG_ENV):
        keep = [i for i in keep if not needs_local_plane(i)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c, started_here = open_cluster()
    try:
        yield c
    finally:
        if started_here:
            localcluster.down()


@pytest.fixture
def local_cluster(cluster: Cluster, request: pytest.FixtureRequest) -> Cluster:
    """The cluster, for a test that relies on the local control plane's kwok stages
    (readiness delay, the never-ready sentinel, unready on demand). Such a test must be
    marked ``kwok`` (deselected on any other cluster); unmarked, or on another cluster
    anyway, it fails rather than skips."""
    if request.node.get_closest_marker("kwok") is None:
        pytest.fail("a test using local_cluster must be marked @pytest.mark.kwok")
    if not cluster.local:
        pytest.fail(f"needs the local control plane's kwok stages, not {cluster.context}")
    return cluster


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    prefix = "t-" + re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")
    name = cluster.create_namespace(prefix)
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def operator_factory(
    cluster: Cluster, namespace: str, tmp_path: Path, operator_identity: rbac.Identity
) -> Iterator[Callable[..., OperatorProcess]]:
    """Make (not start) operator processes for the test namespace, authenticated as the
    chart's ServiceAccount; all are stopped at teardown and the last log lines are
    printed when the test failed."""
    made: list[OperatorProcess] = []

    def make(**kwargs: Any) -> OperatorProcess:
        kwargs.setdefault("kubeconfig", operator_identity.kubeconfig)
        op = OperatorProcess(
            cluster, namespaces=[namespace], log_dir=tmp_path / "operator", **kwargs
        )  # type: ignore[arg-type]
        made.append(op)
        return op

    yield make
    for op in made:
        op.stop()
        print(f"--- operator log tail ({op.log_path}) ---\n{op.log_tail()}")


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    """A started operator watching the test namespace."""
    return operator_factory().start()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dataplane(
    cluster: Cluster, namespace: str, prometheus: PrometheusServer
) -> Iterator[DataPlane]:
    """The simulated data plane (``harness.dataplane``) in the test namespace, scraped by
    the session's Prometheus for as long as the test runs."""
    dp = DataPlane(cluster, namespace).start()
    prometheus.add_target(f"dp-{namespace}", dp.address)
    yield dp
    prometheus.remove_target(f"dp-{namespace}")
    dp.stop()


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory all xdist workers of this run share (the parent of their basetemps)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def operator_identity(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> rbac.Identity:
    """The chart's ServiceAccount ``ferryman-system:ferryman`` with its cluster-scope RBAC
    (release ``ferryman``; providers name the Secrets tests use), applied under a file
    lock by the first worker; every worker then uses the same token kubeconfig."""
    shared = shared_dir(tmp_path_factory) / "operator-identity"
    shared.mkdir(parents=True, exist_ok=True)
    kubeconfig = shared / "kubeconfig"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not kubeconfig.exists():
            objects = rbac.render(
                cluster.helm_bin,
                rbac.suite_values(),
                workdir=shared,
            )
            return rbac.provision(cluster, objects, kubeconfig=kubeconfig)
    return rbac.Identity(rbac.OPERATOR_NAMESPACE, rbac.RELEASE, kubeconfig)
