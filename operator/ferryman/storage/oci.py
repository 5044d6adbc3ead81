"""``oci://registry/repository:tag`` or ``...@sha256:<hex>``: an OCI artifact (ORAS).

The artifact's image manifest (OCI image-spec v1.1, ``manifest.md``) lists its files as
layers, each named by its ``org.opencontainers.image.title`` annotation (what ``oras
push`` writes). One layer: a file artifact (its digest is the layer's sha256); several:
a tree whose paths are the titles (``tree``). A layer that ORAS would unpack (a pushed
directory, ``io.deis.oras.content.unpack``) and an image index are Unsupported: push the
files themselves. Each blob is checked against its descriptor's size and digest.

Uses oras (the ``storage`` extra) for the distribution API (OCI distribution-spec v1.1:
manifests, blobs, Basic and Bearer token auth). Environment (the Rollout's
``storage.secretName`` Secret, docs/artifacts.md): ``OCI_USERNAME``, ``OCI_PASSWORD``;
``OCI_CA_FILE`` (a CA bundle). TLS always, except for a loopback registry (127.0.0.1,
localhost, ::1) or with ``--plain-http``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ferryman import errors
from ferryman.storage.failure import Reason, StorageError, has_status, words
from ferryman.storage.sink import Item, Listing

CHUNK = 1 << 20
TITLE = "org.opencontainers.image.title"
UNPACK = "io.deis.oras.content.unpack"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class OciStore:
    uri: str
    timeout: float  # seconds per request (oras' own retries apply)
    plain_http: bool = False

    def __post_init__(self) -> None:
        try:
            import oras.client
            import oras.container
        except ImportError as e:
            raise StorageError(
                Reason.UNSUPPORTED, "oci:// needs the storage extra (pip install ferryman[storage])"
            ) from e
        reference = self.uri.removeprefix("oci://")
        try:
            self.container = oras.container.Container(reference)
        except Exception as e:
            raise StorageError(Reason.INVALID_ARTIFACT, f"{self.uri[:200]}: {_text(e)}") from e
        host = (
            self.container.registry.rsplit(":", 1)[0]
            if "]" not in self.container.registry
            else (self.container.registry.rsplit("]", 1)[0] + "]")
        )
        insecure = self.plain_http or host in LOOPBACK
        tls_verify = os.environ.get("OCI_CA_FILE") or True
        self.client = oras.client.OrasClient(
            hostname=self.container.registry,
            insecure=insecure,
            tls_verify=tls_verify,
            auth_backend=self._challenge("http" if insecure else "https", tls_verify),
        )
        user, password = os.environ.get("OCI_USERNAME"), os.environ.get("OCI_PASSWORD")
        if user and password:
            self.client.auth.set_basic_auth(user, password)

    def _challenge(self, scheme: str, tls_verify: bool | str) -> str:
        """oras' auth backend for the registry's ``WWW-Authenticate`` challenge on
        ``/v2/`` (distribution-spec "Determining support"): ``basic`` (htpasswd
        registries) or ``token`` (Bearer: Docker Hub, GHCR, Harbor, ...)."""
        import requests

        try:
            resp = requests.get(
                f"{scheme}://{self.container.registry}/v2/",
                timeout=self.timeout,
                verify=tls_verify,
            )
        except requests.RequestException as e:
            raise _error(e, self.uri) from e
        challenge = resp.headers.get("WWW-Authenticate", "")
        return "basic" if challenge.lower().startswith("basic") else "token"

    def listing(self) -> Listing:
        try:
            manifest = self.client.get_manifest(self.container, allowed_media_type=[MANIFEST])
        except Exception as e:
            raise _error(e, self.uri) from e
        layers: list[dict[str, Any]] = manifest.get("layers") or []
        items = []
        for layer in layers:
            annotations = layer.get("annotations") or {}
            title = annotations.get(TITLE)
            if not title:
                raise StorageError(
                    Reason.INVALID_ARTIFACT, f"{self.uri[:200]}: a layer has no {TITLE}"
                )
            if annotations.get(UNPACK) == "true":
                raise StorageError(
                    Reason.UNSUPPORTED,
                    f"{self.uri[:200]}: layer {title!r} is a packed directory; push its files",
                )
            items.append(Item(title, int(layer["size"]), layer["digest"]))
        if len(items) == 1:
            return Listing("file", PurePosixPath(items[0].path).name, items)
        name = PurePosixPath(self.container.repository).name
        return Listing("tree", name, items)

    def read(self, item: Item) -> Iterator[bytes]:
        where = f"{self.uri[:200]} layer {item.path!r}"
        sha = hashlib.sha256()
        got = 0
        try:
            with self.client.get_blob(self.container, item.handle, stream=True) as resp:
                if resp.status_code != 200:
                    raise _status(resp.status_code, where)
                for chunk in resp.iter_content(chunk_size=CHUNK):
                    sha.update(chunk)
                    got += len(chunk)
                    yield chunk
        except StorageError:
            raise
        except Exception as e:
            raise _error(e, where) from e
        if got != item.size:
            raise StorageError(
                Reason.TRUNCATED, f"{where}: got {got} bytes, the manifest says {item.size}"
            )
        if f"sha256:{sha.hexdigest()}" != item.handle:
            raise StorageError(Reason.INVALID_ARTIFACT, f"{where}: blob digest differs")


def _text(e: BaseException) -> str:
    return errors.describe(e).splitlines()[0][:300]


def _status(code: int, where: str) -> StorageError:
    if code in (401, 403):
        return StorageError(Reason.ACCESS_DENIED, f"{where}: HTTP {code}")
    if code == 404:
        return StorageError(Reason.NOT_FOUND, f"{where} does not exist")
    return StorageError(Reason.UNREACHABLE, f"{where}: HTTP {code}")


def _error(e: Exception, where: str) -> StorageError:
    """An oras / requests exception as a StorageError (oras raises ValueError with the
    registry's answer for a non-200 manifest)."""
    import requests

    text = _text(e)
    response = getattr(e, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return _status(response.status_code, where)
    low = words(text)  # a URL's port or path is not a status code or a word
    if has_status(text, 401, 403) or "unauthorized" in low or "denied" in low:
        return StorageError(Reason.ACCESS_DENIED, f"{where}: {text}")
    if has_status(text, 404) or "manifest unknown" in low or "not found" in low:
        return StorageError(Reason.NOT_FOUND, f"{where} does not exist")
    if isinstance(
        e, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    ):
        return StorageError(Reason.TRUNCATED, f"{where}: {text}")
    return StorageError(Reason.UNREACHABLE, f"{where}: {text}")
