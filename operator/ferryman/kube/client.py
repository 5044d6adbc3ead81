"""One shared ``kubernetes.aio`` client for the whole operator.

Built once at startup and shared: constructing API objects without a shared ApiClient
opens a new connection pool per call. Status writes go through here (merge patches to the
status subresource), never through kopf's ``patch.status``, so each status field has one
writer and one code path.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.aio import client, config
from kubernetes.aio.config.config_exception import ConfigException

from ferryman.api.common import GROUP, VERSION

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster credentials when running in a pod, else $KUBECONFIG."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            await config.load_kube_config(client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self.api.close()

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch ``status`` of one of ferryman's objects."""
        await self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,
        )
