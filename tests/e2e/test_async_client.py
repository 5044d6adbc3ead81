"""The operator's async Kubernetes client (``kubernetes.aio``, DESIGN.md §3) does what
ferryman needs against this cluster: server-side apply with a field manager, a status
patch through the status subresource, and a watch."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes.aio import config as aio_config
from kubernetes.aio.dynamic import DynamicClient

from harness.kube import Cluster


async def _scenario(cluster: Cluster, namespace: str) -> dict[str, Any]:
    api = await aio_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    async with api:
        dyn = await DynamicClient(api)
        configmaps = await dyn.resources.get(api_version="v1", kind="ConfigMap")
        widgets = await dyn.resources.get(api_version="smoke.ferryman.dev/v1", kind="Widget")
        seen: list[tuple[str, str]] = []

        async def watch() -> None:
            async for event in dyn.watch(configmaps, namespace=namespace, timeout=20):
                seen.append((event["type"], event["raw_object"]["metadata"]["name"]))
                if ("ADDED", "applied") in seen:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)  # let the watch open before the object appears
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": namespace},
            "data": {"k": "v1"},
        }
        await dyn.server_side_apply(configmaps, body=body, field_manager="ferryman")
        # Applying the full desired state again replaces the value, not appends.
        body["data"] = {"k": "v2"}
        applied = await dyn.server_side_apply(configmaps, body=body, field_manager="ferryman")
        await asyncio.wait_for(watcher, timeout=20)

        widget = {
            "apiVersion": "smoke.ferryman.dev/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": namespace},
            "spec": {"size": 1},
        }
        await dyn.server_side_apply(widgets, body=widget, field_manager="ferryman")
        await dyn.patch(
            widgets.status,
            body={"status": {"phase": "Ready"}},
            name="w",
            namespace=namespace,
            content_type="application/merge-patch+json",
        )
        got = await dyn.get(widgets, name="w", namespace=namespace)
        return {
            "data": applied.to_dict()["data"],
            "managers": [m["manager"] for m in applied.to_dict()["metadata"]["managedFields"]],
            "phase": got.to_dict()["status"]["phase"],
            "seen": seen,
        }


def test_async_client_apply_status_patch_and_watch(
    cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    result = asyncio.run(_scenario(cluster, namespace))
    assert result["data"] == {"k": "v2"}
    assert result["managers"] == ["ferryman"]
    assert result["phase"] == "Ready"
    assert ("ADDED", "applied") in result["seen"]
