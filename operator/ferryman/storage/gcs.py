"""``gs://bucket/object``: a file or a prefix in Google Cloud Storage.

Uses google-cloud-storage (the ``storage`` extra; the JSON API,
https://cloud.google.com/storage/docs/json_api). Environment (the Rollout's
``storage.secretName`` Secret, docs/artifacts.md):
``GOOGLE_SERVICE_ACCOUNT_JSON`` (a service-account JSON key, the file's content),
else ``GOOGLE_APPLICATION_CREDENTIALS`` (a path) or the default chain (workload identity);
``GCS_ANONYMOUS=true`` for public buckets; ``GCS_ENDPOINT_URL`` overrides the API
endpoint (a fake server, a private endpoint); ``GOOGLE_CLOUD_PROJECT`` (optional).

``gs://bucket/name`` names an object when one exists, else every object under ``name/``.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ferryman import errors
from ferryman.storage.failure import Reason, StorageError
from ferryman.storage.sink import Item, Listing

RANGE = 8 << 20  # bytes per ranged read
READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"


def _client(timeout: float) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.oauth2 import service_account

    credentials: Any = None
    key = os.environ.get("GOOGLE_SERVICE_ACCOUNT_JSON")
    if key:
        try:
            info = json.loads(key)
            credentials = service_account.Credentials.from_service_account_info(
                info, scopes=[READ_ONLY]
            )
        except (ValueError, KeyError) as e:
            # The exception text could quote the key: name only its type.
            raise StorageError(
                Reason.ACCESS_DENIED,
                f"GOOGLE_SERVICE_ACCOUNT_JSON is not a service-account key ({type(e).__name__})",
            ) from e
    elif os.environ.get("GCS_ANONYMOUS") == "true":
        credentials = AnonymousCredentials()
    options = {}
    if endpoint := os.environ.get("GCS_ENDPOINT_URL"):
        options["api_endpoint"] = endpoint
    return storage.Client(
        project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "ferryman-storage-init",
        credentials=credentials,
        client_options=options or None,
    )


@dataclass
class GcsStore:
    uri: str
    timeout: float  # seconds per request; also the retry deadline

    def __post_init__(self) -> None:
        try:
            from google.api_core.retry import Retry
            from google.cloud.storage.retry import DEFAULT_RETRY
        except ImportError as e:
            raise StorageError(
                Reason.UNSUPPORTED, "gs:// needs the storage extra (pip install ferryman[storage])"
            ) from e
        parsed = urllib.parse.urlparse(self.uri)
        self.bucket_name, self.name = parsed.netloc, parsed.path.strip("/")
        self.retry: Retry = DEFAULT_RETRY.with_timeout(self.timeout)
        try:
            self.client = _client(self.timeout)
        except StorageError:
            raise
        except Exception as e:
            raise _error(e, self.uri) from e
        self.bucket = self.client.bucket(self.bucket_name)

    def listing(self) -> Listing:
        try:
            if self.name:
                blob = self.bucket.get_blob(self.name, timeout=self.timeout, retry=self.retry)
                if blob is not None:
                    name = PurePosixPath(self.name).name
                    return Listing("file", name, [Item(name, blob.size, blob.name)])
            prefix = f"{self.name}/" if self.name else ""
            items = [
                Item(b.name[len(prefix) :], b.size, b.name)
                for b in self.client.list_blobs(
                    self.bucket_name, prefix=prefix or None, timeout=self.timeout, retry=self.retry
                )
                if b.name[len(prefix) :] and not b.name.endswith("/")  # directory markers
            ]
        except Exception as e:
            raise _error(e, self.uri) from e
        if not items:
            raise StorageError(Reason.NOT_FOUND, f"no object or prefix {self.uri}")
        return Listing("tree", PurePosixPath(self.name).name or self.bucket_name, items)

    def read(self, item: Item) -> Iterator[bytes]:
        """The object in ranged reads of RANGE bytes, each on GCS_ENDPOINT_URL: a fresh
        blob, not the listed one, whose ``mediaLink`` is the server's own idea of its
        address (a fake server's, a private endpoint's public name)."""
        where = f"gs://{self.bucket_name}/{item.handle}"
        blob = self.bucket.blob(item.handle)
        size = item.size or 0
        try:
            for start in range(0, size, RANGE):
                end = min(start + RANGE, size) - 1
                yield blob.download_as_bytes(
                    start=start,
                    end=end,
                    checksum=None,  # a range has no whole-object checksum; the digest follows
                    timeout=self.timeout,
                    retry=self.retry,
                )
        except Exception as e:
            raise _error(e, where) from e


def _error(e: Exception, where: str) -> StorageError:
    """A google-cloud / google-auth / requests exception as a StorageError."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(e, api.RetryError) and isinstance(e.cause, Exception):
        e = e.cause  # the retries ran out: what the last attempt saw
    text = errors.describe(e).splitlines()[0][:300]
    if isinstance(e, api.NotFound):
        return StorageError(Reason.NOT_FOUND, f"{where} does not exist")
    if isinstance(e, api.Forbidden | api.Unauthorized | auth.GoogleAuthError):
        return StorageError(Reason.ACCESS_DENIED, f"{where}: {text}")
    if (
        isinstance(
            e, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
        )
        or "IncompleteRead" in text
    ):
        return StorageError(Reason.TRUNCATED, f"{where}: {text}")
    if type(e).__name__ == "DataCorruption":  # google-resumable-media: checksum mismatch
        return StorageError(Reason.TRUNCATED, f"{where}: {text}")
    return StorageError(Reason.UNREACHABLE, f"{where}: {text}")
