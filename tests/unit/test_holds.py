"""A hold that repeats is not silent (``handlers.holds``): its retry backs off, a first
rollout held still gets a phase (Progressing), and a hold that persists is reported once as
``Progressing=True`` reason ``Held`` naming what it waits for."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

import kopf
import pytest

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import Rollout, RolloutPhase
from ferryman.handlers import executor, holds, observed, rollouts, validity
from ferryman.handlers.context import OperatorContext, install
from ferryman.plan import conditions, labels, machine, serving
from ferryman.plan.decision import DeploymentState, Observed, VersionRecord
from ferryman.plan.route import Route
from ferryman.routing import router_for
from unit.fake_kube import FakeKube
from unit.machine_sim import T0, _set_ready
from unit.test_executor import NS, mv_of
from unit.test_request_volume import first_rollout_over_plain_services, first_snapshot

STATUS = ("rollouts", NS, "fraud")


def test_the_retry_of_a_hold_backs_off_to_a_cap() -> None:
    assert [holds.retry_in(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert holds.retry_in(0) == holds.FIRST_RETRY
    assert [holds.persists(n) for n in range(holds.REPORT_AFTER + 1)] == [
        *([False] * holds.REPORT_AFTER),
        True,
    ]


def test_consecutive_holds_are_counted_and_forgotten_when_one_is_not_held() -> None:
    counts: holds.Holds = {}
    key = (NS, "fraud")
    delays = [holds.after(counts, key, True, None) for _ in range(4)]
    assert delays == [1.0, 2.0, 4.0, 8.0] and counts[key] == 4
    assert holds.after(counts, key, True, 3.0) == 3.0  # an earlier deadline still counts
    assert holds.after(counts, key, False, None) is None and key not in counts
    assert holds.after(counts, key, False, 30.0) == 30.0
    assert holds.after(counts, key, True, 30.0) == 1.0  # a new run starts at the first retry


def live_service(new: Rollout) -> dict[str, Any]:
    """The live Service as another reconcile of ours wrote it since our last read found
    it absent: the transition's re-read finds it, the index (and the decision) did not."""
    router = router_for(new.spec)
    return router.build(
        name="fraud",
        namespace=NS,
        route=Route(stable="1.0.0"),
        services={"1.0.0": "fraud-1.0.0"},
        port=serving.service_port(new),
        metadata={
            "labels": {labels.MANAGED_BY: "ferryman"},
            "ownerReferences": [labels.owner_reference(new)],
        },
    )


def held_run(new: Rollout, first: Any, kube: FakeKube, count: int) -> executor.Executed:
    seen = dataclasses.replace(first_snapshot(new, kube), holds=count)
    return asyncio.run(executor.execute(kube, seen, first))


def progressing(status: Any) -> Any:
    return conditions.find(status.conditions, conditions.PROGRESSING)


def test_a_first_rollout_held_gets_a_phase_and_no_report_yet() -> None:
    new, first, kube = first_rollout_over_plain_services()
    kube.put(live_service(new))
    done = held_run(new, first, kube, 0)
    assert done.held and done.wrote
    written = kube.statuses[STATUS]["status"]
    assert written["phase"] == RolloutPhase.PROGRESSING.value  # not {observedGeneration: 1}
    assert written["candidateVersion"] is None  # the decision itself did not happen
    assert progressing(done.status) is None or progressing(done.status).reason != holds.REASON


def test_a_hold_that_persists_is_reported_once_naming_what_it_waits_for() -> None:
    new, first, kube = first_rollout_over_plain_services()
    kube.put(live_service(new))
    done = held_run(new, first, kube, holds.REPORT_AFTER - 1)
    assert done.held and done.wrote
    cond = progressing(done.status)
    assert cond is not None and cond.status == ConditionStatus.TRUE
    assert cond.reason == holds.REASON and "Service fraud" in cond.message, cond
    # The next held reconcile decides from the status as written: nothing new to write.
    again = new.model_copy(deep=True)
    again.status = type(new.status).model_validate(kube.statuses[STATUS]["status"])
    again.metadata.resource_version = "2"
    kube.put_status("rollouts", NS, "fraud", "2", kube.statuses[STATUS]["status"])
    writes = len(kube.writes)
    seen = dataclasses.replace(
        first_snapshot(again, kube),
        holds=holds.REPORT_AFTER,
        written=again.status.model_dump(by_alias=True, mode="json"),
    )
    redecided = machine.decide(
        again.spec,
        again.status,
        Observed(
            versions=(VersionRecord("fraud-1.0.0", "1.0.0"),),
            deployments={},
            now=T0,
            capabilities=router_for(again.spec).capabilities,
            generation=1,
        ),
    )
    done = asyncio.run(executor.execute(kube, seen, redecided))
    assert done.held and not done.wrote
    assert ("status", "rollouts", "fraud") not in kube.writes[writes:]


def test_a_decision_not_held_reports_progressing_from_its_phase_again() -> None:
    new, first, kube = first_rollout_over_plain_services()
    kube.put(live_service(new))
    held_run(new, first, kube, holds.REPORT_AFTER)
    reported = type(new.status).model_validate(kube.statuses[STATUS]["status"])
    assert progressing(reported).reason == holds.REASON
    decision = machine.decide(
        new.spec,
        reported,
        Observed(
            versions=(VersionRecord("fraud-1.0.0", "1.0.0"),),
            deployments={},
            now=T0,
            capabilities=router_for(new.spec).capabilities,
            generation=1,
        ),
    )
    cond = progressing(decision.status)
    assert cond is not None and cond.reason != holds.REASON


def ghost_indexes(new: Rollout) -> dict[str, Any]:
    """kopf's indexes for ``new`` holding a ghost: Deployment fraud-1.0.0 with 4 of 4
    Ready, which the cluster has with none Ready (an index that never catches up)."""
    found: dict[str, Any] = {i.id: {} for i in observed.INDEXES}
    found["modelversions_by_model"] = {(NS, "fraud"): [mv_of("1.0.0")]}
    found["deployments_by_rollout"] = {
        (NS, "fraud"): [("fraud-1.0.0", "1.0.0", DeploymentState(4, 4))]
    }
    found["rollouts_by_model"] = {}
    return found


def test_a_persisting_hold_backs_off_and_reports_once_through_reconcile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon's path: each reconcile of a decision held on a ghost Deployment waits
    longer than the one before, the first writes a phase, the ``REPORT_AFTER``-th writes
    the ``Held`` condition naming the Deployment, and the ones after write no status."""
    posted: list[str] = []
    monkeypatch.setattr(
        kopf,
        "event",
        lambda *a, **k: posted.append(k["message"]) if k.get("reason") == holds.REASON else None,
    )
    monkeypatch.setattr(validity, "name_problem", lambda *a: None)  # fraud-1.0.0: a dot
    new, _first, kube = first_rollout_over_plain_services()
    kube.put_status("modelversions", NS, "fraud-1.0.0", "1", {})
    ghost = serving.deployment(mv_of("1.0.0"), new, replicas=4)
    _set_ready(ghost, 0)
    kube.put(ghost)
    memo: dict[str, Any] = {}
    ctx = install(memo, OperatorContext(kube=cast(Any, kube), http=cast(Any, None)))
    body = new.model_dump(by_alias=True, mode="json", exclude_none=True)
    delays, wrote, reasons = [], [], []
    for _ in range(holds.REPORT_AFTER + 2):
        delay, written = asyncio.run(
            rollouts.reconcile(
                body=cast(Any, body), memo=cast(Any, memo), indexes=ghost_indexes(new)
            )
        )
        held = kube.statuses[STATUS]
        body["metadata"]["resourceVersion"], body["status"] = (
            held["resourceVersion"],
            held["status"],
        )
        delays.append(delay)
        wrote.append(written)
        reasons.append(progressing(type(new.status).model_validate(held["status"])))
    assert delays == [holds.retry_in(n) for n in range(1, holds.REPORT_AFTER + 3)]
    assert body["status"]["phase"] == RolloutPhase.PROGRESSING.value
    assert body["status"].get("weights") is None  # no route: weight never on unready pods
    assert ("apply", "Service", "fraud") not in kube.writes
    assert wrote == [True, *[False] * (holds.REPORT_AFTER - 2), True, False, False]
    report = reasons[holds.REPORT_AFTER - 1]
    assert report is not None and report.reason == holds.REASON
    assert "Deployment fraud-1.0.0" in report.message, report.message
    assert ctx.holds[(NS, "fraud")] == holds.REPORT_AFTER + 2
    assert posted == [report.message]  # one Warning Event, with the report
