"""No module under ``operator/ferryman`` grows past 450 lines (issue 11 §1): a module that
long holds more than one topic, and the next feature makes it worse. Split by topic, with a
module docstring that says why the new module exists.

No file in ``operator/ferryman`` is generated (the CRDs are generated *from* ``api/`` into
``crds/``), so there are no exceptions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "ferryman"
LIMIT = 450


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_where_the_test_looks() -> None:
    assert (PACKAGE / "plan" / "machine.py").is_file()
    assert len(modules()) > 20


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_at_most_450_lines(path: Path) -> None:
    name = path.relative_to(PACKAGE).as_posix()
    assert lines(path) <= LIMIT, (
        f"operator/ferryman/{name} has {lines(path)} lines (limit {LIMIT}): split it by topic"
    )
