"""A URI to its store, then fetch and verify (docs/artifacts.md).

``fetch`` downloads into ``dest`` through ``sink.download`` (all or nothing); ``verify_pvc``
hashes a file or directory on a mounted claim in place, copying nothing; ``digest`` computes
an artifact's digest for ``kubectl ferryman digest`` (a local path, or any URI fetched into
a temporary directory).
"""

from __future__ import annotations

import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ferryman.storage import pvc, sink, tree
from ferryman.storage.failure import Reason, StorageError

SCHEMES = ("https", "s3", "gs", "oci", "pvc")


@dataclass(frozen=True)
class Options:
    """``ca_file``: trust for https; ``pvc_root``: where claims are mounted (each at
    ``<pvc_root>/<claim>``); ``timeout``: seconds per request; ``plain_http``: allow a
    registry without TLS beyond loopback hosts (oci)."""

    ca_file: str | None = None
    pvc_root: Path = Path("/mnt/pvc")
    timeout: float = 60.0
    plain_http: bool = False


def check_digest(digest: str) -> str:
    algorithm, _, hexes = digest.partition(":")
    if algorithm != "sha256" or len(hexes) != 64 or hexes.strip("0123456789abcdef"):
        raise StorageError(
            Reason.UNSUPPORTED, f"digest {digest[:80]!r}: expected sha256:<64 lowercase hex>"
        )
    return digest


def store(uri: str, options: Options) -> sink.Store:
    """The store for ``uri``; raises StorageError(Unsupported / InvalidArtifact)."""
    parsed = urllib.parse.urlparse(uri)
    if not parsed.netloc:
        raise StorageError(Reason.INVALID_ARTIFACT, f"{uri[:200]!r} has no host, bucket or claim")
    if parsed.scheme == "https":
        from ferryman.storage.https import HttpsStore

        return HttpsStore(uri, options.ca_file, options.timeout)
    if parsed.scheme == "s3":
        from ferryman.storage.s3 import S3Store

        return S3Store(uri, options.timeout)
    if parsed.scheme == "gs":
        from ferryman.storage.gcs import GcsStore

        return GcsStore(uri, options.timeout)
    if parsed.scheme == "oci":
        from ferryman.storage.oci import OciStore

        return OciStore(uri, options.timeout, options.plain_http)
    raise StorageError(
        Reason.UNSUPPORTED,
        f"scheme {parsed.scheme!r} of {uri[:200]} is not supported (https, s3, gs, oci, pvc are)",
    )


def fetch(uri: str, digest: str, dest: Path, options: Options) -> Path:
    """Fetch ``uri`` into ``dest`` and verify ``digest``; return the artifact's path.
    A ``pvc://`` artifact is verified in place (``verify_pvc``) and its path returned.
    Raises StorageError."""
    check_digest(digest)
    if urllib.parse.urlparse(uri).scheme == "pvc":
        return verify_pvc(uri, digest, options)
    path, _ = sink.download(store(uri, options), dest, digest)
    (dest / ".digest").write_text(digest + "\n")
    return path


def verify_pvc(uri: str, digest: str, options: Options) -> Path:
    """Hash the claim's file or directory where it is mounted; DigestMismatch if it
    differs. Nothing is copied: the model server mounts the same path read-only."""
    path = pvc.resolve(uri, options.pvc_root)
    actual = tree.digest_path(path)
    if actual != digest:
        raise StorageError(
            Reason.DIGEST_MISMATCH,
            f"{uri[:200]}: expected {digest}, got {actual}: the claim does not hold the "
            "artifact this ModelVersion registered",
        )
    return path


def digest(target: str, options: Options) -> str:
    """The digest of a local path, or of a URI's artifact (fetched into a temporary
    directory, then removed). Raises StorageError."""
    scheme = urllib.parse.urlparse(target).scheme
    if scheme == "pvc":
        return tree.digest_path(pvc.resolve(target, options.pvc_root))
    if scheme not in SCHEMES:
        return tree.digest_path(Path(target))
    with tempfile.TemporaryDirectory(prefix="ferryman-digest-") as tmp:
        _, actual = sink.download(store(target, options), Path(tmp), None)
        return actual
