"""The storage initializer: ``python -m ferryman.storage_init --uri U --digest D --dest DIR``.

Runs as an init container before the model server. It fetches the artifact into ``DIR``
and verifies its sha256 digest while streaming; on a mismatch it deletes what it wrote
and exits non-zero with a message naming both digests, so the pod never becomes Ready and
no traffic can reach a model other than the one registered.

Supported schemes:
- ``https://``: streamed with the standard library. Trust: the system CA bundle,
  ``--ca-file`` or ``SSL_CERT_FILE``. A bearer token comes from ``MODEL_STORE_TOKEN`` (set
  it in the Rollout's ``storage.secretName`` Secret).
- ``pvc://<claim>/<path>``: the claim mounted under ``--pvc-root`` (default /mnt/pvc); the
  file is verified and copied.
Other schemes (s3, gs, oci) need their cloud SDKs, which this image does not carry: they
fail with a message saying so (use a storage-initializer image that supports them).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import ssl
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ferryman import errors

CHUNK = 1 << 20
TOKEN_ENV = "MODEL_STORE_TOKEN"


class StorageError(Exception):
    """A failure with a message for the pod's termination log."""


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _https(uri: str, ca_file: str | None, timeout: float) -> Iterator[bytes]:
    context = ssl.create_default_context(cafile=ca_file)
    request = urllib.request.Request(uri, headers={"User-Agent": "ferryman-storage-init"})
    if token := os.environ.get(TOKEN_ENV):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as resp:
            yield from _chunks(resp)
    except OSError as e:
        raise StorageError(f"cannot download {uri}: {errors.describe(e)}") from e


def _pvc(uri: str, pvc_root: Path) -> Iterator[bytes]:
    parsed = urllib.parse.urlparse(uri)
    path = (pvc_root / parsed.netloc / parsed.path.lstrip("/")).resolve()
    if pvc_root.resolve() not in path.parents:
        raise StorageError(f"{uri} points outside the mounted claim")
    try:
        with open(path, "rb") as f:
            yield from _chunks(f)
    except OSError as e:
        raise StorageError(f"cannot read {uri} at {path}: {errors.describe(e)}") from e


def fetch(
    uri: str,
    digest: str,
    dest: Path,
    *,
    ca_file: str | None = None,
    pvc_root: Path = Path("/mnt/pvc"),
    timeout: float = 60.0,
) -> Path:
    """Fetch ``uri`` into ``dest`` and verify it; return the file's path."""
    algorithm, _, expected = digest.partition(":")
    if algorithm != "sha256" or len(expected) != 64:
        raise StorageError(f"unsupported digest {digest!r}: expected sha256:<64 hex>")
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "https":
        source = _https(uri, ca_file, timeout)
    elif scheme == "pvc":
        source = _pvc(uri, pvc_root)
    else:
        raise StorageError(
            f"scheme {scheme!r} of {uri} is not supported by the built-in storage initializer "
            "(https and pvc are); configure a storage-initializer image that supports it"
        )
    dest.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(uri).path).name or "model"
    target = dest / name
    partial = dest / f".{name}.partial"
    sha = hashlib.sha256()
    size = 0
    try:
        with open(partial, "wb") as out:
            for chunk in source:
                sha.update(chunk)
                out.write(chunk)
                size += len(chunk)
        actual = f"sha256:{sha.hexdigest()}"
        if actual != digest:
            raise StorageError(
                f"digest mismatch for {uri}: expected {digest}, got {actual} ({size} bytes); "
                "the artifact is not the one this ModelVersion registered"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    (dest / ".digest").write_text(digest + "\n")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferryman.storage_init", description=__doc__)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--digest", required=True)
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--ca-file", default=None)
    parser.add_argument("--pvc-root", default=Path("/mnt/pvc"), type=Path)
    parser.add_argument("--timeout", default=60.0, type=float)
    args = parser.parse_args(argv)
    try:
        path = fetch(
            args.uri,
            args.digest,
            args.dest,
            ca_file=args.ca_file,
            pvc_root=args.pvc_root,
            timeout=args.timeout,
        )
    except StorageError as e:
        print(f"storage-initializer: {e}", file=sys.stderr)
        # The kubelet shows the termination message in `kubectl describe pod`.
        termination_log = Path("/dev/termination-log")
        if termination_log.exists() and os.access(termination_log, os.W_OK):
            termination_log.write_text(str(e))
        return 1
    print(f"storage-initializer: {args.uri} -> {path} ({args.digest}) verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
