"""``pvc://claim/path``: a file or directory on a PersistentVolumeClaim, verified in place.

``plan/initializer.py`` mounts the claim read-only in the init container at
``<pvc_root>/<claim>`` (default ``/mnt/pvc/<claim>``) and, for the model server, mounts
``path`` of the same claim read-only (``subPath``) at ``MODEL_DIR/<last segment of path>``:
no copy. The initializer only hashes it (``tree``); a path that leaves the claim (``..``,
a symlink out of it) is InvalidArtifact.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path, PurePosixPath

from ferryman.storage.failure import Reason, StorageError


def parse(uri: str) -> tuple[str, str]:
    """``(claim, path inside the claim)`` of ``pvc://claim/path``; InvalidArtifact when
    the path is empty or not a plain relative path."""
    parsed = urllib.parse.urlparse(uri)
    path = parsed.path.strip("/")
    if not parsed.netloc or not path or any(p in ("", ".", "..") for p in path.split("/")):
        raise StorageError(
            Reason.INVALID_ARTIFACT, f"{uri[:200]!r}: expected pvc://<claim>/<path in the claim>"
        )
    return parsed.netloc, path


def name(uri: str) -> str:
    """The artifact's name in MODEL_DIR: the last segment of its path."""
    return PurePosixPath(parse(uri)[1]).name


def resolve(uri: str, pvc_root: Path) -> Path:
    """Where ``uri`` is on the mounted claim; NotFound when the claim is not mounted."""
    claim, path = parse(uri)
    root = pvc_root / claim
    if not root.is_dir():
        raise StorageError(Reason.NOT_FOUND, f"claim {claim!r} is not mounted at {root}")
    full = root / path
    if root.resolve() not in full.resolve().parents:
        raise StorageError(Reason.INVALID_ARTIFACT, f"{uri[:200]} points outside the claim")
    return full
