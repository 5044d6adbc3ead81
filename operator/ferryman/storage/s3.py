"""``s3://bucket/key``: a file or a prefix in any S3-compatible store, with obstore.

obstore (Apache Arrow's Rust ``object_store``, the ``storage`` extra) speaks the S3 REST
API with SigV4 (AWS docs, "Signing AWS API requests"). boto3 is not used: botocore needs
``python-dateutil<3`` and ferryman's kubernetes client needs ``>=3``.

Environment (the Rollout's ``storage.secretName`` Secret, docs/artifacts.md):
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` (optional),
``AWS_REGION`` (default us-east-1), ``AWS_ENDPOINT_URL`` (any S3-compatible endpoint;
plain ``http://`` only for a loopback host or with ``AWS_ALLOW_HTTP=true``). Without keys
the store's default chain applies (web identity / IRSA, instance metadata); with
``AWS_SKIP_SIGNATURE=true`` requests are anonymous (public buckets).

``s3://bucket/key`` names an object when one exists at ``key``, else every object under
``key/`` (a tree; keys ending in ``/`` are directory markers and ignored).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ferryman import errors
from ferryman.storage.failure import Reason, StorageError, has_status, words
from ferryman.storage.sink import Item, Listing

CHUNK = 1 << 20
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _config(timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(S3 config, client options) from the environment."""
    config: dict[str, Any] = {"region": os.environ.get("AWS_REGION") or "us-east-1"}
    options: dict[str, Any] = {"timeout": f"{int(timeout)}s", "connect_timeout": "10s"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        config["endpoint"] = endpoint
        parsed = urllib.parse.urlparse(endpoint)
        if parsed.scheme == "http" and (
            parsed.hostname in LOOPBACK or os.environ.get("AWS_ALLOW_HTTP") == "true"
        ):
            options["allow_http"] = True
    return config, options


@dataclass
class S3Store:
    uri: str
    timeout: float  # seconds per request

    def __post_init__(self) -> None:
        try:
            import obstore.store
        except ImportError as e:
            raise StorageError(
                Reason.UNSUPPORTED, "s3:// needs the storage extra (pip install ferryman[storage])"
            ) from e
        parsed = urllib.parse.urlparse(self.uri)
        self.bucket, self.key = parsed.netloc, parsed.path.strip("/")
        config, options = _config(self.timeout)
        try:
            self.store = obstore.store.S3Store(
                self.bucket,
                config=config,  # type: ignore[arg-type]
                client_options=options,  # type: ignore[arg-type]
                retry_config={"max_retries": 2, "retry_timeout": _td(self.timeout)},
            )
        except Exception as e:
            raise StorageError(Reason.UNSUPPORTED, f"S3 configuration: {_text(e)}") from e

    def listing(self) -> Listing:
        import obstore

        try:
            if self.key:
                try:
                    meta = obstore.head(self.store, self.key)
                    name = PurePosixPath(self.key).name
                    return Listing("file", name, [Item(name, meta["size"], self.key)])
                except FileNotFoundError:
                    pass
            prefix = f"{self.key}/" if self.key else ""
            items = [
                Item(m["path"][len(prefix) :], m["size"], m["path"])
                for batch in obstore.list(self.store, prefix or None)
                for m in batch
                # A directory marker ("dir/", normalised by object_store to "dir").
                if m["path"][len(prefix) :] and not m["path"].endswith("/")
            ]
        except Exception as e:
            raise _error(e, self.uri) from e
        if not items:
            raise StorageError(Reason.NOT_FOUND, f"no object or prefix {self.uri}")
        return Listing("tree", PurePosixPath(self.key).name or self.bucket, items)

    def read(self, item: Item) -> Iterator[bytes]:
        import obstore

        try:
            result = obstore.get(self.store, item.handle)
            for chunk in result.stream(min_chunk_size=CHUNK):
                yield bytes(chunk)
        except Exception as e:
            raise _error(e, f"s3://{self.bucket}/{item.handle}") from e


def _td(seconds: float) -> Any:
    import datetime

    return datetime.timedelta(seconds=seconds)


def _text(e: BaseException) -> str:
    """The first line of an obstore error (its text carries a debug dump after it)."""
    return errors.describe(e).splitlines()[0][:300]


def _error(e: Exception, where: str) -> StorageError:
    """An obstore exception as a StorageError; its type names what happened."""
    from obstore import exceptions as x

    text = _text(e)
    if isinstance(e, FileNotFoundError | x.NotFoundError):
        return StorageError(Reason.NOT_FOUND, f"{where} does not exist")
    if isinstance(e, x.PermissionDeniedError | x.UnauthenticatedError):
        return StorageError(Reason.ACCESS_DENIED, f"{where}: {text}")
    low = words(str(e))  # a URL's port or path is not a status code or a word
    if has_status(str(e), 403) or any(
        w in low for w in ("forbidden", "invalidaccesskeyid", "signature")
    ):
        return StorageError(Reason.ACCESS_DENIED, f"{where}: {text}")
    if "nosuchbucket" in low or has_status(str(e), 404):
        return StorageError(Reason.NOT_FOUND, f"{where} does not exist")
    if "body" in low and ("incomplete" in low or "closed" in low or "decoding" in low):
        return StorageError(Reason.TRUNCATED, f"{where}: {text}")
    return StorageError(Reason.UNREACHABLE, f"{where}: {text}")
