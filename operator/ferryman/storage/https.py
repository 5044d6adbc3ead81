"""``https://host/path``: one file over HTTPS (RFC 9110), with the standard library.

Trust: the system CA bundle, ``--ca-file`` or ``SSL_CERT_FILE``. A bearer token comes
from ``MODEL_STORE_TOKEN`` (a key of the Rollout's ``storage.secretName`` Secret). HTTP
has no listing, so an https artifact is always one file; a directory is served from a
store that lists (s3, gs, oci, pvc). A body shorter than its ``Content-Length`` is
``Truncated``.
"""

from __future__ import annotations

import http.client
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from ferryman import errors
from ferryman.storage.failure import Reason, StorageError
from ferryman.storage.sink import Item, Listing

CHUNK = 1 << 20
TOKEN_ENV = "MODEL_STORE_TOKEN"


@dataclass
class HttpsStore:
    uri: str
    ca_file: str | None
    timeout: float  # seconds, per connect and per read

    def listing(self) -> Listing:
        name = PurePosixPath(urllib.parse.urlparse(self.uri).path).name or "model"
        return Listing("file", name, [Item(name, None)])

    def read(self, item: Item) -> Iterator[bytes]:
        context = ssl.create_default_context(cafile=self.ca_file)
        request = urllib.request.Request(self.uri, headers={"User-Agent": "ferryman-storage-init"})
        if token := os.environ.get(TOKEN_ENV):
            request.add_header("Authorization", f"Bearer {token}")
        where = _redacted(self.uri)
        try:
            with urllib.request.urlopen(request, context=context, timeout=self.timeout) as resp:
                announced = resp.headers.get("Content-Length")
                got = 0
                while chunk := resp.read(CHUNK):
                    got += len(chunk)
                    yield chunk
                if announced is not None and got != int(announced):
                    raise StorageError(
                        Reason.TRUNCATED, f"{where}: got {got} bytes of {announced} announced"
                    )
        except urllib.error.HTTPError as e:
            reason = {404: Reason.NOT_FOUND, 410: Reason.NOT_FOUND}.get(e.code)
            if e.code in (401, 403):
                reason = Reason.ACCESS_DENIED
            raise StorageError(reason or Reason.UNREACHABLE, f"{where}: HTTP {e.code}") from e
        except http.client.IncompleteRead as e:
            raise StorageError(
                Reason.TRUNCATED, f"{where}: the connection closed early ({errors.describe(e)})"
            ) from e
        except OSError as e:
            raise StorageError(
                Reason.UNREACHABLE, f"cannot download {where}: {errors.describe(e)}"
            ) from e


def _redacted(uri: str) -> str:
    """The URI without userinfo or query string (a presigned URL's signature)."""
    p = urllib.parse.urlparse(uri)
    return (
        p._replace(netloc=p.hostname or "", query="").geturl()
        if p.port is None
        else (p._replace(netloc=f"{p.hostname}:{p.port}", query="").geturl())
    )
