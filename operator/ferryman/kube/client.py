"""One shared ``kubernetes.aio`` client for the whole operator.

Built once at startup and shared: constructing API objects without a shared ApiClient
opens a new connection pool per call. Status writes go through here (merge patches to the
status subresource), never through kopf's ``patch.status``, so each status field has one
writer and one code path.

Transient failures (a connection reset or refused, an answer cut short, a request timeout,
HTTP 429 from an API server whose storage is still initializing after a restart) are
retried here a few times within about 4 s, so a dropped connection costs a second rather
than a failed reconcile and its backoff (tests/e2e/test_faults.py). Every call is safe to
repeat: reads, server-side apply (the same desired state), deletes (NotFound is success)
and status patches (the same body; conditioned ones answer 409 if the first attempt did
land).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any, TypeVar

import aiohttp
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


class ReadRefused(Exception):
    """The API server refused a read (HTTP 401 or 403: not authenticated, or RBAC grants
    no ``get`` on it); ``status`` is the HTTP status, ``reason`` the server's message."""

    def __init__(self, what: str, status: int, reason: str) -> None:
        self.what, self.status, self.reason = what, status, reason
        super().__init__(f"{what}: HTTP {status}: {reason}")


def _raise_refused_write(e: DynamicApiError, kind: str, name: str, label: str) -> None:
    """Raise what a refused write of ``kind``/``name`` means to callers: ``Conflict``
    ("``label`` changed") on HTTP 409, ``ApplyRejected`` on REJECTED_STATUSES (400, 403,
    404, 422); return for anything else, which the caller re-raises as it is."""
    if e.status == 409:
        raise Conflict(f"{label} changed") from e
    if e.status in REJECTED_STATUSES:
        raise ApplyRejected(kind, name, e.status, _api_message(e)) from e


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
JSON_PATCH = "application/json-patch+json"
# With a parameter, so the client sends our bytes as they are (it would json.dumps them
# again for the bare type); the API server ignores the parameter.
APPLY_PATCH = "application/apply-patch+yaml; charset=utf-8"


def apply_body(obj: dict[str, Any]) -> bytes:
    """``obj`` as the body of a server-side apply, which the API server reads as YAML:
    JSON with every non-ASCII character escaped, as the client writes it (YAML refuses
    some raw characters, e.g. the control character U+0085), except that a character
    outside the Basic Multilingual Plane (an emoji) is
    written as YAML's ``\\UXXXXXXXX`` escape rather than JSON's surrogate pair
    (``\\ud83d\\ude00``), which YAML refuses. The client's default body (plain
    ``json.dumps``) made every apply of an object carrying an emoji (a ModelVersion's
    lineage, copied to annotations) fail with HTTP 400: found by the reconcile fuzz,
    issue 13 §3."""
    return _SURROGATE_PAIR.sub(_yaml_escape, json.dumps(obj)).encode()


# A JSON surrogate-pair escape not itself escaped (preceded by an even run of backslashes).
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _yaml_escape(m: re.Match[str]) -> str:
    high, low = int(m.group(2), 16), int(m.group(3), 16)
    return f"{m.group(1)}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"


FIELD_MANAGER = "ferryman"
# Pauses (seconds) between the attempts of a call that failed transiently: 5 attempts.
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
T = TypeVar("T")


def transient(e: BaseException) -> bool:
    """A failure that the same request may not meet again a moment later: the connection
    (reset, refused, closed), an answer cut short, a timeout, or HTTP 429 Too Many
    Requests. (kopf treats the same connection errors as retryable.)"""
    if isinstance(
        e, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | asyncio.TimeoutError
    ):
        return True
    return isinstance(e, DynamicApiError | client.ApiException) and e.status == 429


# The holder identity this process reports in its User-Agent (``identify``).
_identity: str | None = None


def identify(identity: str | None) -> None:
    """Name this process (its leader-election identity, the pod name) in the
    User-Agent of every client connected afterwards, so the API server's audit log shows
    which replica made each request."""
    global _identity
    _identity = identity


def user_agent() -> str:
    """``ferryman/<version> (<identity>)``, or ``ferryman/<version>`` unidentified."""
    try:
        version = metadata.version("ferryman")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"ferryman/{version} ({_identity})" if _identity else f"ferryman/{version}"


class Kube:
    retry_delays: tuple[float, ...] = RETRY_DELAYS_S

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self._dynamic: DynamicClient | None = None
        self._resources: dict[tuple[str, str], Any] = {}

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again after each of ``retry_delays`` while it fails transiently;
        the last failure, or any other, propagates as it is."""
        for delay in (*self.retry_delays, None):
            try:
                return await call()
            except Exception as e:
                if delay is None or not transient(e):
                    raise
                log.info("%s: %s; retrying in %gs", what, type(e).__name__, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

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
        async def call() -> Any:
            res = await self._resource(api_version, kind)
            assert self._dynamic is not None
            return await self._dynamic.get(res, name=name, namespace=namespace)

        try:
            found = await self._retrying(f"GET {kind} {namespace}/{name}", call)
        except NotFoundError:
            return None
        except DynamicApiError as e:
            if e.status in (401, 403):
                raise ReadRefused(
                    f"GET {kind} {namespace}/{name}", e.status, _api_message(e)
                ) from e
            raise
        result: dict[str, Any] = found.to_dict()
        return result

    async def list_objects(
        self, api_version: str, kind: str, namespace: str
    ) -> list[dict[str, Any]]:
        """Every object of ``kind`` in ``namespace``, as the API server lists it now (a
        consistent read, not a cache)."""

        async def call() -> Any:
            res = await self._resource(api_version, kind)
            assert self._dynamic is not None
            return await self._dynamic.get(res, namespace=namespace)

        found = await self._retrying(f"LIST {kind} {namespace}", call)
        items: list[dict[str, Any]] = found.to_dict().get("items") or []
        return items

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

        async def call() -> Any:
            res = await self._resource(obj["apiVersion"], obj["kind"])
            assert self._dynamic is not None
            meta = obj["metadata"]
            return await self._dynamic.request(
                "patch",
                res.path(name=meta["name"], namespace=meta.get("namespace")),
                body=apply_body(obj),
                content_type=APPLY_PATCH,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )

        try:
            applied = await self._retrying(f"apply {obj['kind']} {obj['metadata']['name']}", call)
        except DynamicApiError as e:
            name = obj["metadata"]["name"]
            _raise_refused_write(e, obj["kind"], name, f"{obj['kind']} {name}")
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
        body = {"preconditions": preconditions} if preconditions else None

        async def call() -> Any:
            res = await self._resource(api_version, kind)
            assert self._dynamic is not None
            return await self._dynamic.delete(res, name=name, namespace=namespace, body=body)

        try:
            with contextlib.suppress(NotFoundError):
                await self._retrying(f"DELETE {kind} {namespace}/{name}", call)
        except DynamicApiError as e:
            if e.status == 409:
                raise Conflict(f"{kind} {namespace}/{name} changed") from e
            raise

    async def patch_metadata(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        metadata: dict[str, Any],
        *,
        resource_version: str,
    ) -> dict[str, Any] | None:
        """Merge-patch ``metadata`` (labels, ownerReferences; a None value removes a key)
        of an object, conditioned on ``resource_version``: raises ``Conflict`` (HTTP 409)
        when the object changed since. Returns the object as patched, None when it is
        gone (404). Orphaning and adoption (``handlers.orphans``) use it."""
        res = await self._resource(api_version, kind)
        assert self._dynamic is not None
        body = {"metadata": {**metadata, "resourceVersion": resource_version}}
        try:
            answer = await self._dynamic.patch(
                res, body=body, name=name, namespace=namespace, content_type=MERGE_PATCH
            )
        except NotFoundError:
            return None
        except DynamicApiError as e:
            if e.status == 409:
                raise Conflict(f"{kind} {namespace}/{name} changed; read it again") from e
            raise
        result: dict[str, Any] = answer.to_dict()
        return result

    async def patch_json(
        self, api_version: str, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """A JSON patch (RFC 6902) of the object, field manager ``ferryman``: how ferryman
        writes the named rules of a route someone else owns (``handlers.shared_routes``;
        never a server-side apply there). Safe to repeat when ``ops`` start with a
        ``test`` of ``metadata.resourceVersion``: an attempt that landed makes the repeat
        fail that test. Returns the object as patched. Raises ``Conflict`` (HTTP 409),
        ``ApplyRejected`` (HTTP 400, 403, 404, 422: a failed ``test`` is 422, so the caller
        reads again to tell a changed object from a refused patch); others as they are."""

        async def call() -> Any:
            res = await self._resource(api_version, kind)
            assert self._dynamic is not None
            return await self._dynamic.request(
                "patch",
                res.path(name=name, namespace=namespace),
                body=ops,
                content_type=JSON_PATCH,
                field_manager=FIELD_MANAGER,
            )

        try:
            answer = await self._retrying(f"JSON patch {kind} {namespace}/{name}", call)
        except DynamicApiError as e:
            _raise_refused_write(e, kind, name, f"{kind} {namespace}/{name}")
            raise
        result: dict[str, Any] = answer.to_dict()
        return result

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
        api = client.ApiClient(configuration)
        api.user_agent = user_agent()
        return cls(api)

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
            await self._retrying(
                f"status of {plural}/{namespace}/{name}",
                lambda: self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, body, _content_type=MERGE_PATCH
                ),
            )
        except client.ApiException as e:
            if e.status == 409:
                raise Conflict(f"{plural}/{namespace}/{name} changed; decide again") from e
            if e.status and 400 <= e.status < 500:
                raise Rejected(
                    f"status of {plural}/{namespace}/{name}", e.status, _api_message(e)
                ) from e
            raise
