"""kubectl ferryman: rendering and action applicability (pure parts of the CLI)."""

from __future__ import annotations

from typing import Any

import pytest

from cases.api_cases import model_version, rollout
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout, RolloutPhase, RolloutStatus
from ferryman.cli import _parser, actions, render


def paused_rollout() -> Rollout:
    obj: dict[str, Any] = rollout(name="fraud")
    obj["metadata"]["namespace"] = "risk"
    obj["status"] = {
        "phase": "Paused",
        "message": "step 1: paused until `kubectl ferryman promote`",
        "pause": {"reason": "Step", "since": "2026-11-22T10:00:00Z"},
        "stableVersion": "1.2.0",
        "candidateVersion": "1.3.0",
        "currentStep": 1,
        "weights": {"stable": 90, "candidate": 10, "mirrorPercent": 0},
        "analysis": {
            "failures": {"error-rate": 1},
            "inconclusive": 0,
            "consecutiveErrors": 0,
            "measurements": [
                {
                    "metric": "error-rate",
                    "query": 'sum(rate(x{version="1.3.0"}[1m]))',
                    "value": 0.02,
                    "threshold": "max 0.01",
                    "verdict": "Failed",
                    "message": "0.02 > 0.01",
                    "at": "2026-11-22T10:00:30Z",
                }
            ],
        },
        "history": [
            {
                "version": "1.2.0",
                "outcome": "Promoted",
                "at": "2026-11-21T09:00:00Z",
                "reason": "first version of the Rollout",
            }
        ],
    }
    return Rollout.model_validate(obj)


def test_status_shows_versions_weights_step_analysis_and_history() -> None:
    text = render.status(paused_rollout())
    assert text.splitlines()[0] == "Rollout risk/fraud (model fraud, canary over gatewayAPI)"
    assert "Paused — step 1: paused until `kubectl ferryman promote`" in text
    assert "1.2.0   weight 90%" in text and "1.3.0   weight 10%   mirror 0%" in text
    assert "Step:      1/2" in text
    assert "failures error-rate: 1" in text
    assert "Failed" in text and "max 0.01" in text and 'version="1.3.0"' in text
    assert "Promoted" in text and "first version of the Rollout" in text


def test_history_and_lineage_tables() -> None:
    hist = render.history(paused_rollout()).splitlines()
    assert hist[0].split() == ["VERSION", "OUTCOME", "AT", "REASON"]
    assert hist[1].startswith("1.2.0") and "Promoted" in hist[1]
    versions = []
    for v in ("1.10.0", "1.2.0", "1.3.0-rc.1", "1.3.0"):
        mv = model_version(name=f"fraud-{v}", version=v)
        mv["spec"]["lineage"] = {"dataVersion": f"data-{v}", "codeCommit": "a1b2c3d"}
        mv["spec"]["metrics"] = {"auc": 0.94}
        versions.append(ModelVersion.model_validate(mv))
    rows = render.lineage(versions).splitlines()
    assert [r.split()[0] for r in rows[1:]] == ["1.2.0", "1.3.0-rc.1", "1.3.0", "1.10.0"]
    assert "data-1.3.0" in rows[3] and "auc=0.94" in rows[3]


@pytest.mark.parametrize("phase", list(RolloutPhase))
@pytest.mark.parametrize("action", sorted(actions.ACTIONS))
def test_action_applicability(action: str, phase: RolloutPhase) -> None:
    status = RolloutStatus(phase=phase, previous_stable_version="1.1.0")
    refusal = actions.refusal(action, status)
    assert (refusal is None) == (phase in actions.ACTIONS[action])
    if refusal:
        assert phase.value in refusal and action in refusal


def test_undo_needs_a_previous_version() -> None:
    assert "previous stable" in (
        actions.refusal("undo", RolloutStatus(phase=RolloutPhase.HEALTHY)) or ""
    )


def test_arguments() -> None:
    args = _parser().parse_args(["promote", "fraud", "-n", "risk", "--full", "--no-wait"])
    assert (args.namespace, args.command, args.rollout, args.full, args.no_wait) == (
        "risk",
        "promote",
        "fraud",
        True,
        True,
    )
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["promote"])
    assert exc.value.code == 2


def test_namespace_flag_before_or_after_the_subcommand() -> None:
    assert _parser().parse_args(["-n", "a", "history", "x"]).namespace == "a"
    assert _parser().parse_args(["history", "x", "-n", "b"]).namespace == "b"
    assert not hasattr(_parser().parse_args(["history", "x"]), "namespace")
