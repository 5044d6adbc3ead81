"""What .github/workflows/e2e-kind.yml promises (no Docker here to run it; actionlint
checks its syntax and scripts in test_lint.py): it runs CI's own test command, with the
settings the suite reads (harness.images, tests/conftest.py) pointing at the kind
cluster and at the model-server image it builds from tests/model_server and loads into
kind, and with kind and every action pinned."""

from __future__ import annotations

import re
from typing import Any

import yaml

from conftest import TEST_KUBECONFIG_ENV
from harness.images import MODEL_IMAGE_ENV
from image.tools import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def steps(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    (job,) = data["jobs"].values()
    return list(job["steps"])


def test_kind_runs_cis_test_command_with_the_suites_settings() -> None:
    data = yaml.safe_load((WORKFLOWS / "e2e-kind.yml").read_text())
    kind_steps = steps("e2e-kind.yml")
    ci_run = [s["run"] for s in steps("ci.yml") if "run" in s]
    (test_step,) = [s for s in kind_steps if s.get("run") in ci_run]
    assert test_step["env"][MODEL_IMAGE_ENV] == "${{ env.MODEL_IMAGE }}"
    image = data["env"]["MODEL_IMAGE"]
    scripts = "\n".join(s.get("run", "") for s in kind_steps)
    assert "tests/model_server" in scripts and '"${MODEL_IMAGE}"' in scripts
    assert re.search(r"kind load docker-image .*\$\{MODEL_IMAGE\}", scripts), scripts
    assert f"{TEST_KUBECONFIG_ENV}=" in scripts
    assert image.startswith("ghcr.io/ferryman-dev/test-model-server:")
    # The kubeconfig step comes before the test run, the image load before both.
    names = [s.get("run", "") for s in kind_steps]
    load = next(i for i, r in enumerate(names) if "kind load" in r)
    config = next(i for i, r in enumerate(names) if TEST_KUBECONFIG_ENV in r)
    assert load < config < kind_steps.index(test_step)


def test_kind_and_actions_are_pinned() -> None:
    data = yaml.safe_load((WORKFLOWS / "e2e-kind.yml").read_text())
    assert re.fullmatch(r"v\d+\.\d+\.\d+", data["env"]["KIND_VERSION"])
    uses = [s["uses"] for s in steps("e2e-kind.yml") if "uses" in s]
    for ref in uses:
        assert re.search(r"@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$", ref), ref
    (kind,) = [u for u in uses if u.startswith("helm/kind-action@")]
    assert re.fullmatch(r"helm/kind-action@v\d+\.\d+\.\d+", kind), kind
