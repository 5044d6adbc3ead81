"""CI runs only `make test`, so the lint tools must run inside it, first: the `test`
target's first prerequisite is `lint`, whose recipe runs ruff (check and format), mypy
and lint-imports."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def target(makefile: str, name: str) -> tuple[list[str], list[str]]:
    """(prerequisites, recipe lines) of a Makefile target."""
    match = re.search(rf"^{name}:([^\n]*)\n((?:\t[^\n]*\n)*)", makefile, re.MULTILINE)
    assert match, f"no target {name}"
    return match.group(1).split(), [line.strip() for line in match.group(2).splitlines()]


def test_make_test_runs_the_lint_tools_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    prerequisites, _ = target(makefile, "test")
    assert prerequisites[0] == "lint"
    _, recipe = target(makefile, "lint")
    # Environment assignments (mypy's cache outside the repository) are not the tool.
    tools = [re.sub(r"^(\w+=\S+ )+", "", line) for line in recipe]
    assert [line.replace("$(VENV)/bin/", "") for line in tools] == [
        "ruff check operator tests hack bench",
        "ruff format --check operator tests hack bench",
        "mypy",
        "lint-imports",
    ]
