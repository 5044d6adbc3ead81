"""One shared ``kubernetes.aio`` client for the whole operator.

Built once at startup and shared: constructing API objects without a shared ApiClient
opens a new connection pool per call. Status writes go through here (merge patches to the
status subresource), never through kopf's ``patch.status``, so each status field has one
writer and one code path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.parse
import urllib.request
from typing import Any

from kubernetes.aio import client, config
from kubernetes.aio.config.config_exception import ConfigException
from kubernetes.aio.dynamic import DynamicClient
from kubernetes.aio.dynamic.exceptions import DynamicApiError, NotFoundError

from ferryman.api.common import GROUP, VERSION

log = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed since the version a write was conditioned on (HTTP 409)."""


class Rejected(Exception):
    """The API server refused a write for a reason retrying the same write cannot fix
    soon (an HTTP status other than 409: a schema or admission policy refusal, a size
    limit, a permission). ``status`` is the HTTP status, ``reason`` the server's words."""

    def __init__(self, what: str, status: int, reason: str) -> None:
        self.what, self.status, self.reason = what, status, reason
        super().__init__(f"{what}: HTTP {status}: {reason}")


class ApplyRejected(Exception):
    """The API server refused to apply an object for a reason on our side that retrying
    the same write cannot fix (HTTP 400, 403, 404, 422): an invalid name or field, a
    forbidden write, a missing namespace. ``reason`` is the API server's message."""

    def __init__(self, kind: str, name: str, status: int, reason: str) -> None:
        super().__init__(f"{kind} {name}: HTTP {status}: {reason}")
        self.kind, self.name, self.status, self.reason = kind, name, status, reason


REJECTED_STATUSES = frozenset({400, 403, 404, 422})


def _api_message(e: DynamicApiError | client.ApiException) -> str:
    """The API server's message in an error response, else the HTTP reason."""
    body = e.body.decode(errors="replace") if isinstance(e.body, bytes) else e.body
    try:
        message = json.loads(body or "").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or body or e.reason)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``/``HTTP_PROXY`` by its
    scheme, unless ``NO_PROXY`` covers its host), as aiohttp's ``trust_env`` picks it;
    None: no proxy."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "ferryman"


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self._dynamic: DynamicClient | None = None
        self._resources: dict[tuple[str, str], Any] = {}

    async def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if key not in self._resources:
            if self._dynamic is None:
                self._dynamic = await DynamicClient(self.api)
            self._resources[key] = await self._dynamic.resources.get(
                api_version=api_version, kind=kind
            )
        return self._resources[key]

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        res = await self._resource(api_version, kind)
        assert self._dynamic is not None
        try:
            found = await self._dynamic.get(res, name=name, namespace=namespace)
        except NotFoundError:
            return None
        result: dict[str, Any] = found.to_dict()
        return result

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of the full desired state with field manager ``ferryman``.

        Callers check first that an existing object of that name is ferryman's own
        (``plan.labels.is_owned_by``); only then is ``force`` used, to take back fields
        of our own objects that someone changed by hand (e.g. ``kubectl scale``).

        Raises ``ApplyRejected`` when the API server refuses the object (HTTP 400, 403,
        404, 422), ``Conflict`` when ``obj`` names a ``metadata.resourceVersion`` (a
        precondition) the object is no longer at (HTTP 409); other errors (5xx,
        connection) propagate as they are.
        """
        res = await self._resource(obj["apiVersion"], obj["kind"])
        assert self._dynamic is not None
        try:
            applied = await self._dynamic.server_side_apply(
                res, body=obj, field_manager=FIELD_MANAGER, force_conflicts=True
            )
        except DynamicApiError as e:
            if e.status == 409:
                raise Conflict(f"{obj['kind']} {obj['metadata']['name']} changed") from e
            if e.status in REJECTED_STATUSES:
                name = obj["metadata"]["name"]
                raise ApplyRejected(obj["kind"], name, e.status, _api_message(e)) from e
            raise
        result: dict[str, Any] = applied.to_dict()
        return result

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        preconditions: dict[str, str] | None = None,
    ) -> None:
        """Delete the object (gone already: nothing). ``preconditions`` (``uid``,
        ``resourceVersion``): delete only the object at exactly those, else raise
        ``Conflict`` (HTTP 409)."""
        res = await self._resource(api_version, kind)
        assert self._dynamic is not None
        body = {"preconditions": preconditions} if preconditions else None
        try:
            with contextlib.suppress(NotFoundError):
                await self._dynamic.delete(res, name=name, namespace=namespace, body=body)
        except DynamicApiError as e:
            if e.status == 409:
                raise Conflict(f"{kind} {namespace}/{name} changed") from e
            raise

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster credentials when running in a pod, else $KUBECONFIG."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            await config.load_kube_config(client_configuration=configuration)
        # aiohttp's trust_env reads the proxy variables and ~/.netrc on every request
        # (~5% of the operator's CPU in a wave, issue 12): resolve the proxy once.
        configuration.proxy = configuration.proxy or env_proxy(configuration.host)
        configuration.client_session_kwargs = {"trust_env": False}
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self.api.close()

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> None:
        """Merge-patch ``status`` of one of ferryman's objects.

        With ``resource_version``, the write succeeds only if the object is still at that
        version (HTTP 409 otherwise): a decision computed from a state that has since
        changed is never written over the newer one.
        """
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            await self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE_PATCH
            )
        except client.ApiException as e:
            if e.status == 409:
                raise Conflict(f"{plural}/{namespace}/{name} changed; decide again") from e
            if e.status and 400 <= e.status < 500:
                raise Rejected(
                    f"status of {plural}/{namespace}/{name}", e.status, _api_message(e)
                ) from e
            raise
