"""Fixtures shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kube import Cluster

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.ferryman.dev"},
    "spec": {
        "group": "smoke.ferryman.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer"}},
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self == oldSelf",
                                        "message": "spec is immutable: create a new Widget instead",
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="session")
def widget_crd(cluster: Cluster) -> Iterator[str]:
    """A test CRD with a CEL immutability rule and a status subresource."""
    cluster.apply(WIDGET_CRD, server_side=True)
    cluster.wait_established("widgets.smoke.ferryman.dev")
    yield "widgets.smoke.ferryman.dev"


CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture(scope="session")
def ferryman_crds(cluster: Cluster) -> list[str]:
    """ferryman's generated CRDs, installed with server-side apply and Established."""
    # The CRDs of the code under test win over whatever an earlier install left.
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ferryman-crds",
        "-f",
        str(CRDS_DIR),
    )
    names = [f"crd/{p.name.removesuffix('.yaml')}" for p in sorted(CRDS_DIR.glob("*.yaml"))]
    cluster.wait_established(*names)
    # The ModelApproval admission policy and binding, as the chart installs them with
    # the CRDs (hack/chart_crds.py).
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ferryman-crds",
        "-f",
        str(CRDS_DIR / "policies"),
    )
    return names
