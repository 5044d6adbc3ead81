"""bench/harness.py counts the operator's requests from an audit log the way the figures
in docs/benchmarks.md say: once per request, a watch when it starts, only the operator's
user, only inside the window, non-2xx answers by code; and its percentiles are nearest-rank."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import OPERATOR_USER, AuditLog, percentile  # noqa: E402


def event(
    verb: str,
    resource: str,
    *,
    stage: str = "ResponseComplete",
    at: str = "2026-11-30T10:00:01.500000Z",
    code: int = 200,
    user: str = OPERATOR_USER,
    name: str = "m0000",
    subresource: str | None = None,
) -> dict[str, Any]:
    ref = {
        "resource": resource,
        "name": name,
        **({"subresource": subresource} if subresource else {}),
    }
    return {
        "stage": stage,
        "verb": verb,
        "user": {"username": user},
        "objectRef": ref,
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": at,
        "stageTimestamp": at.replace(".500000", ".600000"),
    }


def audit_of(tmp_path: Path, events: list[dict[str, Any]]) -> AuditLog:
    path = tmp_path / "audit.log"
    path.write_text("")
    log = AuditLog(path)
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"stage": "Resp')
    return log


START, END = 1796032800.0, 1796032810.0  # 2026-11-30T10:00:00Z .. 10:00:10Z


@pytest.fixture(autouse=True)
def local_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit log is read only for the local control plane (not for a cluster of
    FERRYMAN_TEST_KUBECONFIG, whose requests it does not hold)."""
    monkeypatch.delenv("FERRYMAN_TEST_KUBECONFIG", raising=False)


def test_requests_are_counted_once_by_verb_and_resource_in_the_window(tmp_path: Path) -> None:
    log = audit_of(
        tmp_path,
        [
            event("get", "services"),
            event("patch", "services"),
            event("patch", "rollouts", subresource="status", code=409),
            event("get", "deployments", code=404),
            # a watch counts when it starts, not again when it ends; one still open
            # (no ResponseComplete yet) counts too
            event("watch", "deployments", stage="ResponseStarted"),
            event("watch", "deployments", stage="ResponseComplete"),
            event("watch", "services", stage="ResponseStarted"),
            # another user, and requests outside the window, do not count
            event("get", "services", user="kubernetes-admin"),
            event("get", "services", at="2026-11-30T09:59:59.500000Z"),
            event("get", "services", at="2026-11-30T10:00:10.500000Z"),
        ],
    )
    got = log.requests(START, END)
    assert dict(got.by_verb) == {
        ("get", "services"): 1,
        ("patch", "services"): 1,
        ("patch", "rollouts/status"): 1,
        ("get", "deployments"): 1,
        ("watch", "deployments"): 1,
        ("watch", "services"): 1,
    }
    assert got.total == 6
    assert dict(got.failed) == {
        (409, "patch", "rollouts/status"): 1,
        (404, "get", "deployments"): 1,
    }
    # Writes keep their completion time and object: the reaction benchmark matches route
    # writes by name.
    assert got.writes == [(START + 1.6, "patch", "services", "m0000")]


def test_only_requests_after_the_log_was_opened_count(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text(json.dumps(event("get", "services")) + "\n")
    log = AuditLog(path)
    with path.open("a") as f:
        f.write(json.dumps(event("patch", "services")) + "\n")
    assert dict(log.requests(START, END).by_verb) == {("patch", "services"): 1}


def test_no_requests_are_read_for_another_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = audit_of(tmp_path, [event("get", "services")])
    monkeypatch.setenv("FERRYMAN_TEST_KUBECONFIG", str(tmp_path / "kubeconfig"))
    assert log.requests(START, END).total == 0


def test_the_last_request_is_the_operators_latest_completed_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("")
    log = AuditLog(path)
    written = json.dumps(event("get", "services", at="2026-11-30T10:00:05.500000Z"))
    lines = [
        json.dumps(event("get", "services", at="2026-11-30T10:00:03.500000Z")),
        json.dumps(event("patch", "services", at="2026-11-30T10:00:02.500000Z")),
        json.dumps(
            event("get", "services", at="2026-11-30T10:00:09.500000Z", user="kubernetes-admin")
        ),
    ]
    # The operator's next request is half-written when the log is first read.
    path.write_text("\n".join(lines) + "\n" + written[:40])
    assert log.last_request() == START + 3.6  # the stageTimestamp, not the admin's later one
    with path.open("a") as f:
        f.write(written[40:] + "\n")
    assert log.last_request() == START + 5.6


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([7.0], 99) == 7.0
