"""The digest of an artifact: one file, or a directory tree (docs/artifacts.md).

A file's digest is ``sha256:`` + the SHA-256 (FIPS 180-4) of its bytes. A tree's digest
is ``sha256:`` + the SHA-256 of its manifest: one line per regular file,
``<64 lowercase hex>  <relative path>\\n`` (two spaces, the ``sha256sum`` format), paths
relative to the tree's root with ``/`` separators, UTF-8, sorted by their UTF-8 bytes.
Empty directories, permissions, owners and times are not part of it (object stores have
none of them); a symlink or a special file makes the tree invalid, and so does a path
that is absolute, has ``.``/``..``/empty segments, or contains a newline or a backslash.
The same function serves a local directory, an S3/GCS prefix, an OCI artifact with
several layers and a directory on a claim, so ``kubectl ferryman digest`` computes locally
what the initializer computes from the store. Reproducible with coreutils::

    (cd DIR && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs -d '\\n' sha256sum) \\
      | sha256sum
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ferryman.storage.failure import Reason, StorageError

CHUNK = 1 << 20
PREFIX = "sha256:"


def check_path(path: str) -> str:
    """``path`` if it is a safe relative POSIX path; raises StorageError(InvalidArtifact)."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\n" in path
        or "\\" in path
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise StorageError(Reason.INVALID_ARTIFACT, f"unsafe path {path!r} in the artifact")
    return path


def manifest(entries: Iterable[tuple[str, str]]) -> bytes:
    """The manifest of ``(relative path, sha256 hex)`` pairs, sorted by path bytes."""
    lines = sorted((check_path(p).encode(), h) for p, h in entries)
    return b"".join(f"{h}  ".encode() + p + b"\n" for p, h in lines)


def tree_digest(entries: Iterable[tuple[str, str]]) -> str:
    """``sha256:<hex>`` of the manifest of ``(relative path, sha256 hex)`` pairs."""
    return PREFIX + hashlib.sha256(manifest(entries)).hexdigest()


def hash_file(path: Path) -> str:
    """The SHA-256 hex of a regular file's bytes (read in 1 MiB chunks)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def files(root: Path) -> list[str]:
    """The regular files under directory ``root``, as sorted relative POSIX paths.

    Raises StorageError(InvalidArtifact) on a symlink or a special file (a socket, a
    device, a FIFO) anywhere in the tree, and NotFound/AccessDenied when unreadable."""
    out: list[str] = []
    try:
        for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
            for name in [*dirnames, *filenames]:
                full = Path(dirpath) / name
                rel = full.relative_to(root).as_posix()
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode):
                    raise StorageError(
                        Reason.INVALID_ARTIFACT, f"symlink {rel!r} in a directory artifact"
                    )
                if stat.S_ISREG(mode):
                    out.append(check_path(rel))
                elif not stat.S_ISDIR(mode):
                    raise StorageError(
                        Reason.INVALID_ARTIFACT, f"special file {rel!r} in a directory artifact"
                    )
    except PermissionError as e:
        raise StorageError(Reason.ACCESS_DENIED, f"cannot read {e.filename}") from e
    return sorted(out)


def _raise(error: OSError) -> None:
    raise error


def digest_path(path: Path) -> str:
    """The digest of a local file or directory (module docstring). Raises StorageError:
    NotFound when absent, InvalidArtifact for a symlink/special file, AccessDenied."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise StorageError(Reason.INVALID_ARTIFACT, f"{path} is a symlink")
        if stat.S_ISREG(mode):
            return PREFIX + hash_file(path)
        if stat.S_ISDIR(mode):
            return tree_digest((rel, hash_file(path / rel)) for rel in files(path))
    except FileNotFoundError as e:
        raise StorageError(Reason.NOT_FOUND, f"{path} does not exist") from e
    except PermissionError as e:
        raise StorageError(Reason.ACCESS_DENIED, f"cannot read {e.filename}") from e
    raise StorageError(Reason.INVALID_ARTIFACT, f"{path} is neither a file nor a directory")
