"""``kubectl ferryman lineage`` / ``history`` read the ModelVersions' own serving history
(``cli.audit``): which version served when, in which roles, and why each stopped, with
the measurement behind a rollback, also after the Rollout is gone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cases.api_cases import rollout as cli_rollout
from ferryman import cli as cli_module
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
    assert audit.serving(VERSIONS, rollout="other") == ""
    assert audit.serving(VERSIONS, rollout="fraud") == audit.serving(VERSIONS)
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


class FakeApi:
    """A namespace holding ``rollout`` (None: 404) and ``VERSIONS``."""

    def __init__(self, rollout: dict[str, Any] | None) -> None:
        self.obj = rollout

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        if self.obj is None:
            raise ApiException(status=404, reason="Not Found")
        return self.obj

    def list_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        return {"items": [v.model_dump(by_alias=True, mode="json") for v in VERSIONS]}


def cli(monkeypatch: pytest.MonkeyPatch, rollout: dict[str, Any] | None) -> None:
    fake = cli_module.Cli.__new__(cli_module.Cli)
    fake.namespace = "risk"
    fake.api = FakeApi(rollout)  # type: ignore[assignment]
    monkeypatch.setattr(cli_module, "Cli", lambda *_: fake)


def test_history_of_a_live_rollout_counts_what_fell_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = cli_rollout(name="fraud")
    obj["status"] = {
        "history": [{"version": "1.1.0", "outcome": "Promoted", "at": at(10)}],
        "olderHistory": {"count": 4, "since": at(0), "until": at(5), "outcomes": {"Promoted": 4}},
    }
    cli(monkeypatch, obj)
    assert cli_module.main(["history", "fraud"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["1.1.0", "Promoted"]
    assert lines[2] == (
        "4 older entries not shown (2026-11-22 10:00:00 to 2026-11-22 10:05:00; Promoted 4)"
    )


def test_history_of_a_deleted_rollout_reads_its_model_versions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(monkeypatch, None)
    assert cli_module.main(["history", "fraud"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Rollout fraud no longer exists; from its ModelVersions' serving history:"
    assert [line.split()[0] for line in out[2:6]] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    assert cli_module.main(["history", "other"]) == 1
    assert "Rollout other not found in namespace risk" in capsys.readouterr().err
