"""ferryman.storage.tree: the directory digest's documented rules (docs/artifacts.md)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ferryman.storage import tree
from ferryman.storage.failure import Reason, StorageError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_manifest_is_sha256sum_lines_sorted_by_utf8_bytes() -> None:
    entries = [("b", sha(b"2")), ("a/z", sha(b"1")), ("B", sha(b"3")), ("é", sha(b"4"))]
    assert tree.manifest(entries) == (
        f"{sha(b'3')}  B\n{sha(b'1')}  a/z\n{sha(b'2')}  b\n{sha(b'4')}  é\n".encode()
    )
    assert tree.tree_digest(entries) == "sha256:" + sha(tree.manifest(entries))


def test_empty_directories_and_permissions_do_not_count(tmp_path: Path) -> None:
    (tmp_path / "m" / "w").mkdir(parents=True)
    (tmp_path / "m" / "w" / "x.bin").write_bytes(b"x")
    before = tree.digest_path(tmp_path / "m")
    (tmp_path / "m" / "empty").mkdir()
    os.chmod(tmp_path / "m" / "w" / "x.bin", 0o600)
    assert tree.digest_path(tmp_path / "m") == before
    (tmp_path / "m" / "w" / "x.bin").write_bytes(b"y")
    assert tree.digest_path(tmp_path / "m") != before


def test_a_file_digest_is_its_bytes_sha256(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"weights")
    assert tree.digest_path(tmp_path / "model.onnx") == "sha256:" + sha(b"weights")


def test_symlinks_are_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "real").write_bytes(b"x")
    os.symlink("real", tmp_path / "m" / "alias")
    with pytest.raises(StorageError) as caught:
        tree.digest_path(tmp_path / "m")
    assert caught.value.reason == Reason.INVALID_ARTIFACT


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "./a", "a//b", "a\nb", "a\\b", "a/"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(StorageError) as caught:
        tree.check_path(path)
    assert caught.value.reason == Reason.INVALID_ARTIFACT
