"""Routers and the CLI speak the decision vocabulary (``plan.route``, ``plan.decision``,
``plan.stages``) and never import the state machine itself (issue 11 §3): a router or
the CLI that reached into ``plan.machine`` would couple to its private rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "ferryman"
MACHINE = "ferryman.plan.machine"


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports directly, ``from ferryman.plan import machine``
    counting as ``ferryman.plan.machine``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_imported_sees_both_spellings(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from ferryman.plan import machine\n")
    assert MACHINE in imported(probe)
    probe.write_text("import ferryman.plan.machine\n")
    assert MACHINE in imported(probe)


@pytest.mark.parametrize(
    "path",
    sorted([*(PACKAGE / "routing").rglob("*.py"), *(PACKAGE / "cli").rglob("*.py")]),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_routers_and_cli_never_import_the_state_machine(path: Path) -> None:
    assert MACHINE not in imported(path)
