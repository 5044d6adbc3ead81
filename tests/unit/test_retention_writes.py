"""Retention's writes (``handlers.retention``): a delete is conditioned on the uid and
resourceVersion the decision saw and is not repeated while the index lags; a mark is
written and announced once; a refused delete is reported and the rest goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ferryman.api.rollout import Rollout, RolloutPhase, RolloutStatus
from ferryman.handlers import namespaces
from ferryman.handlers import retention as handler
from ferryman.handlers.ledger import Ledger, StatusLedger
from ferryman.kube.client import Conflict
from unit.test_retention import NOW, spec, twelve


class Writer:
    """Records the calls ``handlers.retention`` makes; ``errors`` by name raise on delete."""

    def __init__(
        self, errors: dict[str, Exception] | None = None, gone: tuple[str, ...] = ()
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.errors = errors or {}
        self.gone = gone  # in the index (twelve()) but no longer on the API server

    rollout: dict[str, Any] | None = None  # the Rollout as listed now (None: as read)
    others: tuple[dict[str, Any], ...] = ()  # other Rollouts in the namespace

    async def list_objects(self, api_version: str, kind: str, ns: str) -> list[dict[str, Any]]:
        self.calls.append(("list", kind))
        if kind == "Rollout":
            return [*([self.rollout] if self.rollout else []), *self.others]
        return [
            mv.model_dump(by_alias=True, mode="json", exclude_none=True)
            for mv in twelve()
            if mv.metadata.name not in self.gone
        ]

    async def delete(self, api_version: str, kind: str, ns: str, name: str, **kw: Any) -> None:
        self.calls.append(("delete", kind, name, kw.get("preconditions")))
        if name in self.errors:
            raise self.errors[name]

    async def patch_status(self, plural: str, ns: str, name: str, status: Any, **_: Any) -> None:
        self.calls.append(("status", plural, name, status["phase"]))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, str]]:
    posted: list[tuple[str, str, str, str]] = []

    def post(body: Any, *, type: str, reason: str, message: str) -> None:
        posted.append((body["kind"], type, reason, message))

    monkeypatch.setattr(namespaces, "post", post)
    return posted


def rollout(**retention: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "metadata": {"name": "fraud", "namespace": "risk"},
            "spec": spec("1.11.0", **retention).model_dump(by_alias=True, exclude_none=True),
        }
    )


STATUS = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="1.11.0")
BODY = {"kind": "Rollout", "metadata": {"name": "fraud", "namespace": "risk"}}


def run(kube: Writer, r: Rollout, ledger: Ledger, written: StatusLedger) -> float | None:
    if kube.rollout is None:  # unless the test says otherwise, the Rollout is as read
        kube.rollout = r.model_dump(by_alias=True, mode="json", exclude_none=True)
    return asyncio.run(
        handler.apply(kube, r, BODY, STATUS, twelve(), NOW, ledger, written)  # type: ignore[arg-type]
    )


def test_deletes_and_marks_once(events: list[tuple[str, str, str, str]]) -> None:
    kube, ledger, written = Writer(), Ledger(), StatusLedger()
    assert run(kube, rollout(keepLast=5, delete=True), ledger, written) is None
    deletes = [c for c in kube.calls if c[0] == "delete"]
    assert [c[2] for c in deletes] == [f"fraud-1-{k}-0" for k in (3, 4, 5, 6)]
    assert deletes[0][3] == {"uid": "uid-1.3.0", "resourceVersion": "7"}
    assert [c[2:] for c in kube.calls if c[0] == "status"] == [
        ("fraud-1-1-0", "Retired"),
        ("fraud-1-2-0", "Retired"),
    ]
    assert [(k, t, r) for k, t, r, _ in events] == [
        ("ModelVersion", "Warning", "Expired"),
        ("ModelVersion", "Warning", "Expired"),
        *[("Rollout", "Normal", "RetentionDeleted")] * 4,
    ]
    # The index still holds all twelve at the same resourceVersion: nothing again.
    kube.calls.clear()
    events.clear()
    run(kube, rollout(keepLast=5, delete=True), ledger, written)
    assert kube.calls == [] and events == []


def test_a_changed_or_refused_delete_is_left_and_reported(
    events: list[tuple[str, str, str, str]],
) -> None:
    kube = Writer({"fraud-1-3-0": Conflict("changed"), "fraud-1-4-0": PermissionError("forbidden")})
    run(kube, rollout(keepLast=5, delete=True), Ledger(), StatusLedger())
    assert [c[2] for c in kube.calls if c[0] == "delete"] == [
        f"fraud-1-{k}-0" for k in (3, 4, 5, 6)
    ]
    assert [r for _, _, r, _ in events].count("RetentionDeleted") == 2
    (failed,) = [m for _, _, r, m in events if r == "RetentionFailed"]
    assert "could not delete ModelVersion fraud-1-4-0" in failed


def test_no_retention_writes_nothing(events: list[tuple[str, str, str, str]]) -> None:
    kube = Writer()
    r = rollout(keepLast=5).model_copy()
    r.spec.retention = None
    assert run(kube, r, Ledger(), StatusLedger()) is None
    assert kube.calls == [] and events == []


def test_a_version_the_index_still_holds_but_is_gone_does_not_push_a_kept_one_out(
    events: list[tuple[str, str, str, str]],
) -> None:
    """1.10.0 was deleted (by hand, by Git) and kopf's index has not caught up: decided on
    the index, 1.6.0 falls out of the five newest and is deleted, for good. The API
    server's list says five newest are 1.6.0-1.9.0 and 1.11.0: 1.6.0 stays."""
    kube = Writer(gone=("fraud-1-10-0",))
    run(kube, rollout(keepLast=5, delete=True), Ledger(), StatusLedger())
    assert [c[2] for c in kube.calls if c[0] == "delete"] == [f"fraud-1-{k}-0" for k in (3, 4, 5)]


def test_a_version_git_retargets_to_during_the_reconcile_is_not_deleted(
    events: list[tuple[str, str, str, str]],
) -> None:
    """The reconcile read spec.target 1.11.0; meanwhile Git rolled back to 1.4.0
    (target.version: 1.4.0). Decided on the spec as read, 1.4.0 is past keepLast and
    deleted: the version the Rollout is now told to serve. The Rollout as it is now
    keeps it."""
    kube = Writer()
    read = rollout(keepLast=5, delete=True)
    now_ = read.model_dump(by_alias=True, mode="json", exclude_none=True)
    now_["spec"]["target"] = {"version": "1.4.0"}
    kube.rollout = now_
    run(kube, read, Ledger(), StatusLedger())
    assert [c[2] for c in kube.calls if c[0] == "delete"] == [f"fraud-1-{k}-0" for k in (3, 5, 6)]


def test_nothing_is_deleted_once_the_rollout_is_gone_or_its_retention_removed(
    events: list[tuple[str, str, str, str]],
) -> None:
    read = rollout(keepLast=5, delete=True)
    removed = read.model_dump(by_alias=True, mode="json", exclude_none=True)
    del removed["spec"]["retention"]
    for now_ in ({}, removed):
        kube = Writer()
        kube.rollout = now_  # {}: the list has no such Rollout
        run(kube, read, Ledger(), StatusLedger())
        assert [c for c in kube.calls if c[0] == "delete"] == []


def test_a_version_another_rollout_of_the_model_targets_is_not_deleted(
    events: list[tuple[str, str, str, str]],
) -> None:
    """Rollout fraud-v2 (the same model, Invalid while fraud serves it: it is to take
    over once fraud is deleted) targets 1.4.0: fraud's retention does not delete it."""
    kube = Writer()
    other = rollout(keepLast=5).model_dump(by_alias=True, mode="json", exclude_none=True)
    other["metadata"]["name"] = "fraud-v2"
    other["spec"]["target"] = {"version": "1.4.0"}
    kube.others = (other,)
    run(kube, rollout(keepLast=5, delete=True), Ledger(), StatusLedger())
    assert [c[2] for c in kube.calls if c[0] == "delete"] == [f"fraud-1-{k}-0" for k in (3, 5, 6)]
