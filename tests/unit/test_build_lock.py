"""Two runs of a build script at once share one cache without racing.

The build scripts (hack/*/build.sh, bench/peers/build.sh) build into ``<bin>.tmp`` and
move it into place; two runs at once (two make targets, two checkouts, two test workers)
once removed each other's ``.tmp`` and one failed. Each script now takes a lock on its
cache first. Here ``go`` is a stub on PATH that takes a second to "build", so the two runs
overlap for certain and nothing is compiled.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STUB_GO = """#!/usr/bin/env bash
# A stand-in for `go install`: one second of "compiling", then the binary in $GOBIN.
sleep 1
mkdir -p "$GOBIN"
printf '#!/bin/sh\\n' > "$GOBIN/kwok"
chmod +x "$GOBIN/kwok"
"""


@pytest.fixture
def stub_env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "stub-bin"
    bindir.mkdir()
    go = bindir / "go"
    go.write_text(STUB_GO)
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    return {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FERRYMAN_CACHE": str(tmp_path / "cache"),
    }


def test_two_concurrent_builds_of_one_tool_both_succeed(
    stub_env: dict[str, str], tmp_path: Path
) -> None:
    script = ROOT / "hack" / "cluster" / "build.sh"
    runs = [
        subprocess.Popen(
            ["bash", str(script), "kwok"],
            env=stub_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    # One run built it; the other waited for the lock and found it cached.
    assert sum("kwok" in out and "cached" in out for out in outputs) == 1, outputs
    built = list((tmp_path / "cache" / "bin").glob("kwok-*/kwok"))
    assert len(built) == 1 and os.access(built[0], os.X_OK)
    assert not list((tmp_path / "cache" / "bin").glob("*.tmp"))
