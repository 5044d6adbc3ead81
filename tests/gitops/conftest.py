"""Fixtures of the GitOps loop test: real Argo CD (tests/harness/argocd_loop.py), a git
server, the simulated data plane scraped by Prometheus, and an analysing operator.

These tests run only with ``--gitops`` (tests/conftest.py), inside a private network
namespace: ``make gitops`` (and ``make test`` after the main suite) runs them through
hack/netns.sh."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e.conftest import ferryman_crds  # noqa: F401 - the same CRD fixture as the e2e suite
from harness import rbac
from harness.argocd_loop import ArgoCD, GitServer
from harness.kube import Cluster
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    server = GitServer(tmp_path / "git").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def argocd(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoCD]:
    """One Argo CD for the session (its start is a good part of a test's time); each test
    has an Application of its own, in its own namespace, deleted at its end."""
    acd = ArgoCD(cluster, tmp_path_factory.mktemp("argocd"))
    try:
        acd.start()
        yield acd
    finally:
        acd.stop()
        print(acd.logs())


@pytest.fixture
def analysing_operator(
    operator_factory: Callable[..., OperatorProcess], tmp_path: Path, prometheus: PrometheusServer
) -> OperatorProcess:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        json.dumps(
            {
                "providers": {"default": {"address": prometheus.url}},
                "namespace": rbac.OPERATOR_NAMESPACE,
                "storageInitializerImage": "",
            }
        )
    )
    return operator_factory(args=[f"--settings={settings}"]).start()
