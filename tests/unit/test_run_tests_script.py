"""hack/run-tests.sh turns pytest's exit 5 ("no tests collected") into success only for
the two marker selections the Makefile uses; any other selection that collects nothing,
such as a `-k` typo, fails. The collection is narrowed through PYTEST_ADDOPTS (which
pytest reads) so the script still sees exactly the arguments under test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# No conftest and no cache: only the exit code matters, and it must stay cheap.
LIGHT = "--noconftest -p no:cacheprovider tests/unit/test_errors.py"
NOTHING = LIGHT + " -k no_such_test_zz"


def run_tests(args: list[str], addopts: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FERRYMAN_TEST"))}
    env |= {"FERRYMAN_TEST_WORKERS": "0", "PYTEST_ADDOPTS": addopts}
    return subprocess.run(
        ["bash", "hack/run-tests.sh", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_an_empty_makefile_marker_selection_succeeds() -> None:
    result = run_tests(["-m", "not e2e"], addopts=NOTHING)
    assert 'collected no tests for -m "not e2e" (exit 5), treated as success' in result.stdout, (
        result.stdout
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_any_other_selection_that_collects_nothing_fails() -> None:
    # The Makefile's own marker plus a `-k` typo (`make unit PYTEST_ARGS="-k ..."`).
    result = run_tests(["-m", "not e2e", "-k", "no_such_test_zz"], addopts=LIGHT)
    assert "collected no tests for this selection (exit 5)" in result.stderr, (
        result.stdout + result.stderr
    )
    assert result.returncode == 5, result.stdout + result.stderr
