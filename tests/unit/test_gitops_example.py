"""examples/gitops is a repository layout users copy: its manifests must be valid for our
API, and its sync waves must create every ModelVersion before the Rollout that targets
one, and the operator's Application before any team's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout

GITOPS = Path(__file__).resolve().parents[2] / "examples" / "gitops"
WAVE = "argocd.argoproj.io/sync-wave"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def wave(doc: dict[str, Any]) -> int:
    return int(doc["metadata"].get("annotations", {}).get(WAVE, "0"))


def team_dirs() -> list[Path]:
    return sorted(p for p in (GITOPS / "teams").iterdir() if p.is_dir())


@pytest.mark.parametrize("team", team_dirs(), ids=lambda p: p.name)
def test_team_manifests_are_valid_and_ordered(team: Path) -> None:
    objs = [d for f in sorted(team.glob("*.yaml")) for d in docs(f)]
    versions = [d for d in objs if d["kind"] == "ModelVersion"]
    rollouts = [d for d in objs if d["kind"] == "Rollout"]
    assert versions and rollouts, f"{team}: needs ModelVersions and a Rollout"
    assert {d["kind"] for d in objs} == {"ModelVersion", "Rollout"}, (
        "only ModelVersions and Rollouts belong in Git: ferryman owns what it creates"
    )
    for d in versions:
        ModelVersion.model_validate(d)
    for d in rollouts:
        Rollout.model_validate(d)
        model, target = d["spec"]["model"], d["spec"]["target"]["version"]
        assert any(
            v["spec"]["model"] == model and v["spec"]["version"] == target for v in versions
        ), f"{team}: Rollout {d['metadata']['name']} targets {model} {target}, not in Git"
        assert wave(d) > max(wave(v) for v in versions), (
            "the Rollout must sync after every ModelVersion it may target"
        )


def test_operator_application_syncs_before_every_team() -> None:
    apps = {d["metadata"]["name"]: d for f in (GITOPS / "apps").glob("*.yaml") for d in docs(f)}
    operator = apps.pop("ferryman")
    apps.pop("ml-platform")  # the root app of apps
    assert operator["spec"]["source"]["path"] == "charts/ferryman"
    assert apps, "at least one team Application"
    for name, app in apps.items():
        assert wave(app) > wave(operator), f"{name} must sync after the operator (CRDs)"
        path = app["spec"]["source"]["path"]
        assert (GITOPS / path).is_dir(), f"{name} syncs {path}, which is not in the layout"
