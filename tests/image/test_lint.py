"""The image and the release machinery pass their linters, exactly as `make test` runs
them (no Docker engine or registry is reachable here, so this is what can be proven):
hadolint on the Dockerfile (with .hadolint.yaml: any finding fails, OCI labels required),
actionlint on every workflow (with shellcheck on their `run:` scripts), shellcheck on the
tools build script. Each linter is also shown to reject a bad input, so a silently
misconfigured linter cannot pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from image.tools import ROOT, actionlint, venv_tool

WORKFLOWS = ROOT / ".github" / "workflows"


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return run(
        venv_tool("hadolint"),
        "--no-color",
        "--config",
        str(ROOT / ".hadolint.yaml"),
        str(dockerfile),
    )


def lint_workflows(directory: Path) -> subprocess.CompletedProcess[str]:
    files = sorted(str(p) for p in [*directory.glob("*.yml"), *directory.glob("*.yaml")])
    assert files, f"no workflows in {directory}"
    # -pyflakes= : no Python `run:` scripts here; shellcheck from the dev extra, always.
    return run(
        actionlint(),
        "-no-color",
        f"-shellcheck={venv_tool('shellcheck')}",
        "-pyflakes=",
        *files,
        cwd=directory.parents[1],
    )


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python -m ferryman\n")
    result = hadolint(bad)
    assert result.returncode == 1, result.stdout + result.stderr
    for rule in ("DL3007", "DL3008", "DL3025", "DL3049"):  # latest, unpinned, shell CMD, labels
        assert rule in result.stdout, result.stdout


def test_hadolint_requires_every_oci_label(tmp_path: Path) -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines(keepends=True)
    dropped = [line for line in lines if "org.opencontainers.image.revision=" not in line]
    assert len(dropped) == len(lines) - 1
    (tmp_path / "Dockerfile").write_text("".join(dropped))
    result = hadolint(tmp_path / "Dockerfile")
    assert result.returncode == 1
    assert "DL3049" in result.stdout and "org.opencontainers.image.revision" in result.stdout


def test_workflows_pass_actionlint() -> None:
    assert {p.name for p in WORKFLOWS.iterdir()} >= {"ci.yml", "release.yml", "e2e-kind.yml"}
    result = lint_workflows(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_bad_workflow(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    shutil.copy(WORKFLOWS / "ci.yml", workflows / "ci.yml")
    (workflows / "bad.yml").write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_field }}\n"
        "      - run: cp $SRC $DEST\n"
        "        timeout: 5\n"
    )
    result = lint_workflows(workflows)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "bad.yml" in out and "ci.yml" not in out, out
    assert "no_such_field" in out  # expression checked against the github context
    assert 'unexpected key "timeout"' in out  # workflow schema
    assert "SC2086" in out  # shellcheck really runs on `run:` scripts


def test_tools_build_script_passes_shellcheck(tmp_path: Path) -> None:
    script = ROOT / "hack" / "tools" / "build.sh"
    shellcheck = venv_tool("shellcheck")
    result = run(shellcheck, "-x", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/bin\n")
    assert "SC2086" in run(shellcheck, str(bad)).stdout
