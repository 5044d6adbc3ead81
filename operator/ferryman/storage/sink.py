"""Writing a store's artifact into the model volume while hashing it, all or nothing.

A store says what the artifact is (``Listing``: one file, or a tree of files with the
sizes it announces) and how to read each file (``Store.read``: an iterator of byte
chunks). ``download`` writes everything into a hidden staging directory beside the
target, checks each file's length against the announced size (short: ``Truncated``),
computes the digest (``tree``), compares it, and only then renames the staging directory
into place: a failure of any kind leaves nothing in ``dest`` for a model server to load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ferryman.storage import tree
from ferryman.storage.failure import Reason, StorageError


@dataclass(frozen=True)
class Item:
    """One file of an artifact: its path relative to the artifact's root (for a single
    file: its name), the size the store announces in bytes (None: unknown) and the
    store's own handle for reading it (a key, a blob descriptor)."""

    path: str
    size: int | None
    handle: Any = None


@dataclass(frozen=True)
class Listing:
    """What a URI names: ``file`` (exactly one item) or ``tree``; ``name`` is what it is
    called in ``dest`` (the file's name, or the tree's directory name)."""

    kind: Literal["file", "tree"]
    name: str
    items: list[Item] = field(default_factory=list)


class Store(Protocol):
    """One store's view of one URI."""

    def listing(self) -> Listing:
        """Raises StorageError (NotFound, AccessDenied, Unreachable, ...)."""
        ...

    def read(self, item: Item) -> Iterable[bytes]:
        """The item's bytes in chunks; raises StorageError (Truncated, ...)."""
        ...


def digest_of(listing: Listing, hexes: dict[str, str]) -> str:
    """The artifact digest from each item's SHA-256 hex (``tree`` module's formats)."""
    if listing.kind == "file":
        return tree.PREFIX + hexes[listing.items[0].path]
    return tree.tree_digest(hexes.items())


def download(store: Store, dest: Path, expected: str | None) -> tuple[Path, str]:
    """Fetch the artifact into ``dest/<listing.name>``; return (that path, its digest).

    With ``expected`` (``sha256:<hex>``) a different digest is ``DigestMismatch`` and
    nothing is kept; without it (``kubectl ferryman digest``) the digest is only computed.
    Raises StorageError; an artifact with no files is NotFound."""
    listing = store.listing()
    if not listing.items:
        raise StorageError(Reason.NOT_FOUND, "the artifact has no files")
    name = tree.check_path(listing.name)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".{name}.partial"
    target = dest / name
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        hexes: dict[str, str] = {}
        for item in listing.items:
            rel = tree.check_path(item.path)
            out_path = staging / (rel if listing.kind == "tree" else "file")
            out_path.parent.mkdir(parents=True, exist_ok=True)
            hexes[rel] = _write(store, item, out_path)
        actual = digest_of(listing, hexes)
        if expected is not None and actual != expected:
            total = sum(i.size or 0 for i in listing.items)
            raise StorageError(
                Reason.DIGEST_MISMATCH,
                f"expected {expected}, got {actual} ({listing.kind}, {len(hexes)} file(s), "
                f"{total} bytes): the artifact is not the one this ModelVersion registered",
            )
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        if listing.kind == "file":
            os.replace(staging / "file", target)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, actual


def _write(store: Store, item: Item, path: Path) -> str:
    sha = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:
        for chunk in store.read(item):
            sha.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if item.size is not None and size != item.size:
        raise StorageError(
            Reason.TRUNCATED,
            f"{item.path}: got {size} bytes, the store announced {item.size}",
        )
    return sha.hexdigest()
