"""ferryman's Argo CD health checks and actions, run by Argo CD's own Lua package (the Go
harness hack/argocd-lua on Argo CD v3.6.1) over every committed testdata case, with open
libraries off (argocd-cm, from the rendered ConfigMap) and on (built-in): the committed
health_test.yaml / action_test.yaml must hold, every phase and pause reason must have a
fixture, the rendered argocd-cm and chart values must not drift, and two actions in one
second must carry different nonces."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ferryman.api.annotations import ACTION, ACTION_ID
from ferryman.api.modelversion import ModelVersionPhase
from ferryman.api.rollout import PauseReason, RolloutPhase
from ferryman.plan import retention
from ferryman.plan.actions import ActionName
from harness import argocd

RENDER = argocd.ROOT / "hack" / "argocd-lua" / "render.py"


def test_every_testdata_case_passes_in_argo_cds_lua_both_ways() -> None:
    done = argocd.run("test", str(argocd.ROLLOUT), str(argocd.MODELVERSION))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for mode in argocd.MODES:
        assert sum(f"ok   {mode} " in line for line in lines) >= 30, done.stdout
    assert re.search(r"^\d+ cases, 0 failed$", lines[-1]), lines[-1]


def test_the_harness_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    kind_dir = tmp_path / "ferryman.dev" / "Rollout"
    shutil.copytree(argocd.ROLLOUT, kind_dir)
    tests = kind_dir / "health_test.yaml"
    tests.write_text(tests.read_text().replace("status: Suspended", "status: Healthy", 1))
    done = argocd.run("test", str(kind_dir))
    assert done.returncode == 1
    assert "FAIL argocd-cm" in done.stdout and "FAIL built-in" in done.stdout


def test_every_phase_pause_reason_and_condition_has_a_fixture() -> None:
    keys = argocd.committed_keys()
    want = {f"Rollout/{p.value}" for p in RolloutPhase if p != RolloutPhase.PAUSED}
    want |= {f"Rollout/Paused/{r.value}" for r in PauseReason}
    want |= {"Rollout/Healthy/Unavailable", "Rollout/Healthy/ShadowStopped"}
    want |= {"Rollout/WaitingForOperator", "Rollout/WaitingForOperator/NewGeneration"}
    want |= {f"ModelVersion/{p.value}" for p in ModelVersionPhase}
    want.add("ModelVersion/WaitingForOperator")
    want.add(f"ModelVersion/Retired/{retention.EXPIRED}")  # marked by retention
    assert not want - keys, f"no fixture for {sorted(want - keys)}"


@pytest.mark.parametrize("kind_dir", [argocd.ROLLOUT, argocd.MODELVERSION], ids=lambda p: p.name)
def test_health_expectations_follow_the_documented_mapping(kind_dir: Path) -> None:
    tests = argocd.load(kind_dir / "health_test.yaml")["tests"]
    assert len(tests) == len(list((kind_dir / "testdata").glob("*.yaml")))
    for case in tests:
        key = argocd.fixture_key(argocd.load(kind_dir / case["inputPath"]))
        status = case["healthStatus"]["status"]
        assert status == argocd.expected_health(key), f"{case['inputPath']} ({key}): {status}"
        assert status != "Unknown" and case["healthStatus"]["message"]


def test_discovery_expectations_follow_ferrymans_action_rule() -> None:
    tests = argocd.load(argocd.ROLLOUT / "actions" / "action_test.yaml")
    assert {t["action"] for t in tests["actionTests"]} == {a.value for a in ActionName}
    for case in tests["discoveryTests"]:
        obj = argocd.load(argocd.ROLLOUT / "actions" / case["inputPath"])
        got = {r["name"]: r["disabled"] for r in case["result"]}
        assert got == argocd.discovery_oracle(obj), case["inputPath"]
    enabled = {
        r["name"] for case in tests["discoveryTests"] for r in case["result"] if not r["disabled"]
    }
    assert enabled == {a.value for a in ActionName}  # each action is enabled somewhere


def test_rendered_argocd_cm_and_chart_values_do_not_drift() -> None:
    done = subprocess.run(
        [sys.executable, str(RENDER), "--check", str(argocd.ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    cm = argocd.load(argocd.CM)
    values = argocd.load(argocd.CHARTS / "argo-cd-values.yaml")
    assert values["configs"]["cm"] == cm["data"]
    assert set(cm["data"]) == {
        "resource.customizations.health.ferryman.dev_Rollout",
        "resource.customizations.actions.ferryman.dev_Rollout",
        "resource.customizations.health.ferryman.dev_ModelVersion",
    }


@pytest.mark.parametrize("action", [a.value for a in ActionName])
def test_two_actions_in_the_same_second_carry_different_nonces(action: str) -> None:
    paused = argocd.ROLLOUT / "actions" / "testdata" / "paused.yaml"
    done = argocd.run("action", str(argocd.ROLLOUT), action, str(paused))
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["mode"] for r in results} == set(argocd.MODES)
    for r in results:
        assert r["sameSecond"], r
        first, second = r["first"], r["second"]
        assert first[ACTION] == second[ACTION] == action
        assert first[argocd.NONCE] != second[argocd.NONCE], r
        assert re.fullmatch(rf"argocd-\d+-{argocd.FIXTURE_RESOURCE_VERSION}", first[argocd.NONCE])


def test_the_lua_actions_write_the_operators_annotation_keys() -> None:
    """Lua cannot import ``ferryman.api.annotations``: every action script sets exactly
    the two keys the operator reads, spelled as there, and names its own action."""
    scripts = sorted((argocd.ROLLOUT / "actions").glob("*/action.lua"))
    assert {p.parent.name for p in scripts} == {a.value for a in ActionName}
    for script in scripts:
        text = script.read_text()
        keys = set(re.findall(r'annotations\["([^"]+)"\]', text))
        assert keys == {ACTION, ACTION_ID}, script
        assert f'annotations["{ACTION}"] = "{script.parent.name}"' in text, script
