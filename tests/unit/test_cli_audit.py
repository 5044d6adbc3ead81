"""``kubectl ferryman lineage`` / ``history`` read the ModelVersions' own serving history
(``cli.audit``): which version served when, in which roles, and why each stopped, with
the measurement behind a rollback, also after the Rollout is gone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ferryman.api.modelversion import ModelVersion
from ferryman.api.older_history import OlderHistory
from ferryman.cli import audit
from unit.machine_sim import T0


def mv(version: str, status: dict[str, Any]) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {"name": "fraud-" + version.replace(".", "-"), "namespace": "risk"},
            "spec": {
                "model": "fraud",
                "version": version,
                "artifact": {"uri": "s3://m/x", "digest": "sha256:" + "0" * 64},
                "serving": {"image": "srv"},
            },
            "status": status,
        }
    )


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


VERSIONS = [
    mv(
        "1.0.0",
        {
            "phase": "Retired",
            "servingHistory": [
                {
                    "rollout": "fraud",
                    "servedFrom": at(0),
                    "servedUntil": at(10),
                    "roles": ["candidate", "stable"],
                    "outcome": "Promoted",
                    "at": at(1),
                    "reason": "first version of the Rollout",
                    "ended": "Replaced",
                    "replacedBy": "1.1.0",
                }
            ],
            "olderServingHistory": {
                "count": 3,
                "since": at(-300),
                "until": at(-200),
                "outcomes": {"Replaced": 3},
            },
        },
    ),
    mv(
        "1.1.0",
        {
            "phase": "Retired",
            "servingHistory": [
                {
                    "rollout": "fraud",
                    "servedFrom": at(5),
                    "servedUntil": at(30),
                    "roles": ["candidate", "stable"],
                    "outcome": "Promoted",
                    "at": at(10),
                    "reason": "all steps completed",
                    "ended": "RolloutDeleted",
                }
            ],
        },
    ),
    mv(
        "1.2.0",
        {
            "phase": "Retired",
            "servingHistory": [
                {
                    "rollout": "fraud",
                    "servedFrom": at(15),
                    "servedUntil": at(20),
                    "roles": ["candidate"],
                    "outcome": "RolledBack",
                    "cause": "Analysis",
                    "at": at(20),
                    "reason": "analysis: metric error-rate failed 2 times",
                    "measurement": {
                        "metric": "error-rate",
                        "value": 0.5,
                        "threshold": "max 0.01",
                        "verdict": "Failed",
                        "at": at(20),
                    },
                    "ended": "RolledBack",
                }
            ],
        },
    ),
    mv(
        "1.3.0",
        {
            "phase": "Registered",
            "lastOutcome": {
                "outcome": "Rejected",
                "reason": "gate auc: 0.8 < min 0.9",
                "at": at(25),
                "rollout": "fraud",
            },
        },
    ),
    mv("1.4.0", {"phase": "Registered"}),
]


def test_serving_history_table_oldest_first_with_why_each_stopped() -> None:
    lines = audit.serving(VERSIONS).splitlines()
    assert lines[0].split() == [
        "VERSION",
        "ROLLOUT",
        "SERVED",
        "FROM",
        "SERVED",
        "UNTIL",
        "ROLES",
        "OUTCOME",
        "ENDED",
        "WHY",
    ]
    assert [line.split()[0] for line in lines[1:5]] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    assert "candidate,stable" in lines[1] and "Replaced" in lines[1]
    assert lines[1].endswith("replaced by 1.1.0")
    assert "RolloutDeleted" in lines[2] and lines[2].endswith("Rollout fraud deleted")
    assert "RolledBack (Analysis)" in lines[3]
    assert "measured error-rate=0.5 (max 0.01)" in lines[3]
    assert "Rejected" in lines[4] and "never served" in lines[4] and "gate auc" in lines[4]
    assert lines[5] == (
        "1.0.0: 3 older intervals not shown (2026-11-22 05:00:00 to 2026-11-22 06:40:00; "
        "Replaced 3)"
    )


def test_only_the_named_rollout_and_nothing_for_never_served() -> None:
    assert audit.serving(VERSIONS, rollout="other") == "1.0.0: " + audit.older(
        VERSIONS[0].status.older_serving_history, "intervals"
    )
    assert audit.serving(VERSIONS[4:]) == ""


def test_older_summary_line() -> None:
    assert audit.older(None, "entries") == ""
    assert audit.older(OlderHistory(count=0), "entries") == ""
    line = audit.older(
        OlderHistory(count=2, since=T0, until=T0, outcomes={"Promoted": 1, "Aborted": 1}),
        "entries",
    )
    assert line == (
        "2 older entries not shown (2026-11-22 10:00:00 to 2026-11-22 10:00:00; "
        "Aborted 1, Promoted 1)"
    )
