"""review14's repros against the real API server (issue 14 §2's serving spec): each
states what must hold and fails today (``xfail(strict=True)``). The rule under test: a
ModelVersion the API server accepts renders a Deployment that server-side apply (what
the operator uses) accepts; otherwise the version can never get a pod."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from cases import serving_runtimes
from ferryman.api.modelversion import ModelVersion
from ferryman.plan import serving
from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")


def accepted_means_servable(cluster: Cluster, edit: Callable[[dict[str, Any]], None]) -> None:
    """The Triton example with ``edit`` applied to its serving spec: refused by the
    ModelVersion schema, or rendered into a Deployment server-side apply accepts."""
    ns = cluster.create_namespace("review14-serving")
    manifest = serving_runtimes.manifest("triton")
    manifest["metadata"]["namespace"] = ns
    edit(manifest["spec"]["serving"])
    try:
        _check(cluster, ns, manifest)
    finally:
        cluster.delete_namespace(ns)


def _check(cluster: Cluster, ns: str, manifest: dict[str, Any]) -> None:
    stored = cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    if stored.returncode != 0:
        return  # refused at admission: the ModelVersion schema did its job
    mv = ModelVersion.model_validate(manifest)
    ro = serving_runtimes.serving_rollout(mv.spec.model)
    ro.metadata.namespace = mv.metadata.namespace = ns
    deployment = serving.deployment(mv, ro, replicas=1, init_image=serving_runtimes.INIT_IMAGE)
    applied = cluster.kubectl(
        "apply", "--server-side", "--field-manager=ferryman", "--dry-run=server", "-f", "-",
        input=json.dumps(deployment), check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr


@pytest.mark.xfail(
    strict=True,
    reason="review14 R4: env names are not unique nor kept off MODEL_* (ferryman's own): "
    "accepted, then server-side apply refuses the Deployment",
)
@pytest.mark.parametrize("name", ["MODEL_URI", "MODEL_DIR", "A"])
def test_r4_a_duplicate_env_name_is_refused_by_the_schema(cluster: Cluster, name: str) -> None:
    def edit(s: dict[str, Any]) -> None:
        s["env"] = [{"name": name, "value": "1"}] + ([{"name": "A", "value": "2"}] * (name == "A"))

    accepted_means_servable(cluster, edit)


@pytest.mark.xfail(
    strict=True,
    reason="review14 R5: a Secret/ConfigMap key '.' or '..' passes the schema's key pattern; "
    "the API server refuses the Deployment",
)
@pytest.mark.parametrize("source", ["secretKeyRef", "configMapKeyRef"])
def test_r5_a_dot_key_is_refused_by_the_schema(cluster: Cluster, source: str) -> None:
    def edit(s: dict[str, Any]) -> None:
        s["env"] = [{"name": "A", "valueFrom": {source: {"name": "c", "key": ".."}}}]

    accepted_means_servable(cluster, edit)


@pytest.mark.xfail(
    strict=True,
    reason="review14 R6: fieldRef metadata.labels['...']/annotations['...'] takes any key; "
    "the API server wants a qualified name and refuses the Deployment",
)
def test_r6_a_downward_api_key_must_be_a_qualified_name(cluster: Cluster) -> None:
    def edit(s: dict[str, Any]) -> None:
        s["env"] = [
            {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a b']"}}}
        ]

    accepted_means_servable(cluster, edit)
