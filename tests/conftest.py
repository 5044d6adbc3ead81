"""Fixtures shared by ferryman's tests.

- ``cluster`` (session): the local control plane, started once per session (or reused
  when ``make up`` already runs it; then it is left running), or the cluster of
  ``FERRYMAN_TEST_KUBECONFIG`` after a guard checks it is a test cluster.
- ``namespace``: a fresh namespace per test, deleted afterwards.
- ``operator``: ``python -m ferryman`` as a subprocess watching the test's namespace.
- ``prometheus`` (session): a real Prometheus on 127.0.0.1 scraping test exporters.

Tests under ``tests/e2e`` are marked ``e2e`` automatically, so ``-m "not e2e"`` runs the
pure unit layer without any cluster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import localcluster
import pytest

from harness.kube import Cluster, open_cluster
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

E2E_DIR = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c, started_here = open_cluster()
    try:
        yield c
    finally:
        if started_here:
            localcluster.down()


@pytest.fixture
def local_cluster(cluster: Cluster) -> Cluster:
    """The cluster, when the test relies on the local control plane's kwok stages
    (readiness delay, the never-ready sentinel, unready on demand)."""
    if not cluster.local:
        pytest.skip("needs the local control plane's simulated pods (kwok stages)")
    return cluster


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    prefix = "t-" + re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")
    name = cluster.create_namespace(prefix)
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def operator_factory(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Make (not start) operator processes for the test namespace; all are stopped
    at teardown and the last log lines are printed when the test failed."""
    made: list[OperatorProcess] = []

    def make(**kwargs: object) -> OperatorProcess:
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
