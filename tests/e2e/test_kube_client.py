"""The operator's ``Kube`` wrapper (ferryman/kube/client.py) against the real API server:
every promise of its docstrings. A status write conditioned on a stale resourceVersion
raises ``Conflict`` (409), any other refusal ``Rejected``; a GET of a missing object is
None; deleting a missing object is no error; server-side apply writes as field manager
``ferryman`` (operation Apply), takes back fields another manager took, returns the
applied object, and raises ``ApplyRejected`` for a refusal on our side (404, 422)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from kubernetes.aio import config as aio_config

from e2e import rollouts as r
from ferryman.kube.client import FIELD_MANAGER, ApplyRejected, Conflict, Kube, Rejected
from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")

T = TypeVar("T")
ROLLOUT = ("ferryman.dev/v1alpha1", "Rollout")


def with_kube(cluster: Cluster, scenario: Callable[[Kube], Awaitable[T]]) -> T:
    """Run ``scenario`` with a ``Kube`` on the cluster's admin credentials."""

    async def run() -> T:
        api = await aio_config.new_client_from_config(config_file=str(cluster.kubeconfig))
        kube = Kube(api)
        try:
            return await scenario(kube)
        finally:
            await kube.close()

    return asyncio.run(run())


def config_map(namespace: str, name: str = "applied", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def test_status_patch_on_a_stale_resource_version_raises_conflict(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    stale = (cluster.get_json("rollout.ferryman.dev", "fraud", namespace) or {})["metadata"][
        "resourceVersion"
    ]

    async def scenario(kube: Kube) -> None:
        # At the version it was read at, the write goes through...
        await kube.patch_status(
            "rollouts", namespace, "fraud", {"message": "first"}, resource_version=stale
        )
        # ...and changed the object, so the same condition is now stale.
        with pytest.raises(Conflict):
            await kube.patch_status(
                "rollouts", namespace, "fraud", {"message": "second"}, resource_version=stale
            )
        # Unconditioned, the write wins whatever the version.
        await kube.patch_status("rollouts", namespace, "fraud", {"message": "third"})

    with_kube(cluster, scenario)
    assert r.status(cluster, namespace)["message"] == "third"


def test_status_refused_by_the_schema_raises_rejected_with_the_servers_words(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)

    async def scenario(kube: Kube) -> Rejected:
        with pytest.raises(Rejected) as caught:
            await kube.patch_status("rollouts", namespace, "fraud", {"phase": "Bogus"})
        return caught.value

    rejected = with_kube(cluster, scenario)
    assert rejected.status == 422
    assert "phase" in rejected.reason and "Bogus" in rejected.reason, rejected.reason
    assert f"rollouts/{namespace}/fraud" in rejected.what
    assert r.status(cluster, namespace).get("phase") != "Bogus"


def test_get_returns_the_object_or_none_when_missing(cluster: Cluster, namespace: str) -> None:
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)

    async def scenario(kube: Kube) -> tuple[Any, Any]:
        found = await kube.get(*ROLLOUT, namespace, "fraud")
        missing = await kube.get(*ROLLOUT, namespace, "no-such-rollout")
        return found, missing

    found, missing = with_kube(cluster, scenario)
    assert missing is None
    assert found["metadata"]["name"] == "fraud"
    assert found["spec"]["target"] == {"version": "1.0.0"}


def test_delete_removes_the_object_and_a_missing_one_is_no_error(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(config_map(namespace, "doomed", k="v"), namespace=namespace)

    async def scenario(kube: Kube) -> Any:
        await kube.delete("v1", "ConfigMap", namespace, "doomed")
        await kube.delete("v1", "ConfigMap", namespace, "doomed")  # already gone: no error
        await kube.delete("v1", "ConfigMap", namespace, "never-existed")
        return await kube.get("v1", "ConfigMap", namespace, "doomed")

    assert with_kube(cluster, scenario) is None
    assert cluster.get_json("configmap", "doomed", namespace) is None


def test_apply_writes_as_ferryman_and_takes_back_a_field_someone_changed(
    cluster: Cluster, namespace: str
) -> None:
    async def first(kube: Kube) -> dict[str, Any]:
        return await kube.apply(config_map(namespace, k="desired", other="x"))

    applied = with_kube(cluster, first)
    assert applied["data"] == {"k": "desired", "other": "x"}  # the applied object comes back
    managers = applied["metadata"]["managedFields"]
    assert [(m["manager"], m["operation"]) for m in managers] == [("ferryman", "Apply")]
    assert FIELD_MANAGER == "ferryman"
    assert "f:k" in managers[0]["fieldsV1"]["f:data"]

    # Someone else takes field k with their own server-side apply.
    by_hand = config_map(namespace, k="by-hand")
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=someone", "-f", "-",
        input=json.dumps(by_hand),
    )  # fmt: skip
    assert (cluster.get_json("configmap", "applied", namespace) or {})["data"]["k"] == "by-hand"

    async def again(kube: Kube) -> dict[str, Any]:
        return await kube.apply(config_map(namespace, k="desired", other="x"))

    taken_back = with_kube(cluster, again)
    assert taken_back["data"] == {"k": "desired", "other": "x"}
    owners = {
        m["manager"]: m["fieldsV1"].get("f:data", {})
        for m in taken_back["metadata"]["managedFields"]
    }
    assert "f:k" in owners["ferryman"] and "f:k" not in owners.get("someone", {}), owners


@pytest.mark.parametrize(
    ("where", "name", "status"),
    [("no-such-namespace", "applied", 404), (None, "Not_A_Valid_Name", 422)],
    ids=["missing-namespace", "invalid-name"],
)
def test_apply_refused_on_our_side_raises_apply_rejected(
    cluster: Cluster, namespace: str, where: str | None, name: str, status: int
) -> None:
    async def scenario(kube: Kube) -> ApplyRejected:
        with pytest.raises(ApplyRejected) as caught:
            await kube.apply(config_map(where or namespace, name, k="v"))
        return caught.value

    rejected = with_kube(cluster, scenario)
    assert (rejected.kind, rejected.name, rejected.status) == ("ConfigMap", name, status)
    assert rejected.reason and "HTTP" not in rejected.reason  # the server's words
    assert cluster.get_json("configmap", name, namespace) is None


def test_apply_keeps_strings_that_look_like_numbers(cluster: Cluster, namespace: str) -> None:
    """Cluster.apply of objects keeps "3e-5" a string (a YAML 1.1 dump would leave it
    unquoted and kubectl would send a number, which a ConfigMap refuses)."""
    data = {"lr": "3e-5", "n": "1_000", "flag": "on", "v": "1.10"}
    cluster.apply(
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "numbers"}, "data": data}],
        namespace=namespace,
    )
    got = cluster.get_json("configmap", "numbers", namespace)
    assert got is not None and got["data"] == data
