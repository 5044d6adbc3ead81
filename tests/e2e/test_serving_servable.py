"""A ModelVersion the API server stores renders a Deployment that server-side apply (what
the operator uses) accepts: otherwise the version could never get a pod (review14 R4-R6:
repeated or ferryman's own env names, '.'/'..' keys, downward-API keys that are not
qualified names were stored, then refused in the Deployment).

The refusals, with the messages that name the problem, are cases of
``tests/cases/api_cases.py`` (run by ``test_api_validation.py``; review14's inputs among
them). This takes the other side: every valid ModelVersion edge case with a serving spec
beyond its image, the names and keys just inside what a pod takes among them, is stored
and its Deployment passes a server-side dry run."""

from __future__ import annotations

import json

import pytest

from cases import serving_runtimes
from cases.api_cases import VALID, Case
from ferryman.api.modelversion import ModelVersion
from ferryman.plan import serving
from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")

SERVING_CASES = [
    c
    for c in VALID
    if c.manifest["kind"] == "ModelVersion" and set(c.manifest["spec"]["serving"]) - {"image"}
]


@pytest.mark.parametrize("case", SERVING_CASES, ids=lambda c: c.name)
def test_a_stored_serving_edge_case_renders_a_deployment_the_api_server_accepts(
    cluster: Cluster, namespace: str, case: Case
) -> None:
    manifest = json.loads(json.dumps(case.manifest))
    manifest["metadata"]["namespace"] = namespace
    cluster.apply(manifest, namespace=namespace)  # stored
    mv = ModelVersion.model_validate(manifest)
    ro = serving_runtimes.serving_rollout(mv.spec.model)
    ro.metadata.namespace = namespace
    deployment = serving.deployment(mv, ro, replicas=1, init_image=serving_runtimes.INIT_IMAGE)
    applied = cluster.kubectl(
        "apply", "--server-side", "--field-manager=ferryman", "--dry-run=server", "-f", "-",
        input=json.dumps(deployment), check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
