"""What the Dockerfile, the release workflow and the Renovate config promise each other
and the rest of ferryman, checked without a Docker engine: the image runs as the UID the
model pods run their init container with, starts the operator, is built with the same
`build` as the e2e wheel test, and every pin Renovate is told to keep current is really
found where the config says."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from cases.api_cases import model_version, rollout
from ferryman import settings
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import serving
from image.tools import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(name: str) -> list[str]:
    """Arguments of every ``NAME`` instruction (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name} (.+)$", joined, re.MULTILINE)]


def dev_pin(package: str) -> str:
    for req in PYPROJECT["project"]["optional-dependencies"]["dev"]:
        name, sep, version = req.partition("==")
        if name == package and sep:
            return version
    raise AssertionError(f"{package} is not pinned in the dev extra")


def test_final_stage_runs_the_operator_as_the_pods_non_root_uid() -> None:
    assert instructions("USER") == [f"{serving.NON_ROOT_UID}:{serving.NON_ROOT_UID}"]
    assert instructions("ENTRYPOINT") == ['["python", "-m", "ferryman"]']
    env = " ".join(instructions("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env


def test_model_pods_run_the_storage_initializer_of_this_image_as_its_user() -> None:
    mv = model_version()
    mv["metadata"]["namespace"] = "risk"
    ro = rollout()
    ro["metadata"].update(namespace="risk", uid="0f2d-uid")
    deployment = serving.deployment(
        ModelVersion.model_validate(mv),
        Rollout.model_validate(ro),
        replicas=1,
        init_image=settings.DEFAULT_IMAGE,
    )
    pod = deployment["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == settings.DEFAULT_IMAGE
    # `python` is the image's interpreter (its ENTRYPOINT's), the module is in the wheel.
    assert init["command"] == ["python", "-m", "ferryman.storage_init"]
    assert importlib.util.find_spec("ferryman.storage_init") is not None
    assert pod["securityContext"]["runAsUser"] == serving.NON_ROOT_UID


def test_the_image_installs_the_storage_extra_the_initializer_needs() -> None:
    """s3://, gs:// and oci:// need the storage extra (docs/artifacts.md): the final
    stage installs the wheel with it, and the extra is the one pyproject.toml declares."""
    (run,) = [r for r in instructions("RUN") if "ferryman-*.whl" in r]
    assert 'pip install --no-cache-dir "${wheel}[storage]"' in run
    extra = PYPROJECT["project"]["optional-dependencies"]["storage"]
    assert {r.partition("==")[0] for r in extra} == {"obstore", "google-cloud-storage", "oras"}
    assert all("==" in r for r in extra)


def test_base_is_pinned_by_tag_to_a_supported_python() -> None:
    (arg,) = [a for a in instructions("ARG") if a.startswith("PYTHON_IMAGE=")]
    image = arg.removeprefix("PYTHON_IMAGE=")
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image)
    assert match, image
    floor = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert floor
    assert (int(match[1]), int(match[2])) >= (int(floor[1]), int(floor[2]))
    assert instructions("FROM") == [
        "--platform=$BUILDPLATFORM ${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE}",
    ]


def test_build_stage_uses_the_dev_extras_build() -> None:
    pins = re.findall(r"pip install --no-cache-dir build==(\S+)", DOCKERFILE)
    assert pins == [dev_pin("build")]


def test_dockerignore_admits_exactly_what_the_wheel_build_reads() -> None:
    admitted = [
        line[1:]
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert PYPROJECT["project"]["readme"] in admitted
    assert set(admitted) == {"pyproject.toml", "README.md", "operator/"}
    copied = {src for args in instructions("COPY") for src in args.split()[:-1]}
    assert copied <= {"pyproject.toml", "README.md", "operator"}


def repository_files() -> list[str]:
    """Paths relative to the root, without hidden directories and the virtualenv."""
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        found += [(Path(top) / f).relative_to(ROOT).as_posix() for f in files]
    return found


def renovate_regex(pattern: str) -> re.Pattern[str]:
    # Renovate's patterns are JavaScript regexes: named groups are (?<name>...).
    return re.compile(pattern.replace("(?<", "(?P<"))


def test_renovate_finds_every_pin_it_is_told_to_keep() -> None:
    config: dict[str, Any] = json.loads((ROOT / "renovate.json").read_text())
    found: dict[str, str] = {}
    for manager in config["customManagers"]:
        (file_pattern,) = manager["managerFilePatterns"]
        files = [p for p in repository_files() if re.search(file_pattern.strip("/"), p)]
        assert files, file_pattern
        for path in files:
            for pattern in manager["matchStrings"]:
                match = renovate_regex(pattern).search((ROOT / path).read_text())
                assert match, f"{pattern} finds nothing in {path}"
                name = match.groupdict().get("depName") or manager["depNameTemplate"]
                found[name] = match["currentValue"]
    assert found == {
        "python": "3.11-slim-bookworm",
        "build": dev_pin("build"),
        "prometheus-client": "0.26.0",
        "github.com/rhysd/actionlint": "v1.7.12",
    }


def workflow(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return data


def test_ci_runs_only_make_test() -> None:
    (job,) = workflow("ci.yml")["jobs"].values()
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == ["bash .ci/run"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_release_builds_both_architectures_and_checks_the_tag_against_app_version() -> None:
    release = workflow("release.yml")
    assert release[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as True
    jobs = release["jobs"]
    check = "\n".join(step.get("run", "") for step in jobs["version"]["steps"])
    assert "charts/ferryman/Chart.yaml" in check and "appVersion" in check
    (build,) = [s for s in jobs["image"]["steps"] if s.get("id") == "push"]
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["tags"] == "${{ env.IMAGE }}:${{ needs.version.outputs.version }}"
    assert release["env"]["IMAGE"] == settings.IMAGE_REPOSITORY
    assert jobs["image"]["outputs"]["digest"] == "${{ steps.push.outputs.digest }}"


def test_release_helm_matches_the_local_control_planes() -> None:
    env = (ROOT / "hack" / "cluster" / "versions.env").read_text()
    (helm,) = re.findall(r"^HELM_VERSION=(\S+)$", env, re.MULTILINE)
    assert workflow("release.yml")["env"]["HELM_VERSION"] == helm
