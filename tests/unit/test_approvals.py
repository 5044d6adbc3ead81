"""Approval gates (``spec.gates.approvals``, ``plan.approvals``) in the state machine:
counting (exact version, the gate's groups, each user once), the pause with reason
AwaitingApproval before any traffic or before 100%, which no promote passes and no
progress deadline ends, and the rollout going on once enough approvals exist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ferryman.api.approval import ApprovalGate
from ferryman.api.rollout import (
    ActionResult,
    PauseReason,
    RolloutPhase,
    RolloutSpec,
    RolloutStatus,
    Verdict,
)
from ferryman.plan import actions, approvals
from ferryman.plan.decision import Approval
from ferryman.plan.route import Route
from unit.machine_sim import Sim, canary_spec, retarget
from unit.test_machine_analysis import measure

GATE = {"count": 2, "groups": ["ml-approvers", "risk-leads"]}


def ok(user: str, version: str = "1.1.0", *groups: str) -> Approval:
    return Approval(f"a-{user}-{version}-{len(groups)}", version, user, groups or ("ml-approvers",))


@pytest.mark.parametrize(
    ("found", "who"),
    [
        ([], []),
        ([ok("alice")], ["alice"]),
        ([ok("alice"), ok("alice", "1.1.0", "risk-leads")], ["alice"]),  # a user counts once
        ([ok("alice", "1.0.0")], []),  # another version
        ([ok("alice", "1.1.0-rc.1")], []),  # not a prefix match either
        ([ok("carol", "1.1.0", "other-team")], []),  # no group of the gate
        ([ok("carol", "1.1.0", "other-team", "risk-leads")], ["carol"]),  # one is enough
        ([ok("bob"), ok("alice")], ["alice", "bob"]),
    ],
)
def test_counting(found: list[Approval], who: list[str]) -> None:
    gate = ApprovalGate.model_validate(GATE)
    assert approvals.approvers(gate, found, "1.1.0") == who


def test_a_gate_without_groups_counts_every_approval_of_the_version() -> None:
    gate = ApprovalGate.model_validate({"count": 1})
    found = [Approval("x", "1.1.0", "dave"), ok("erin", "1.0.0")]
    assert approvals.approvers(gate, found, "1.1.0") == ["dave"]


def at_gate(at: str, steps: list[object]) -> Sim:
    spec = canary_spec(steps, gates={"approvals": {**GATE, "at": at}})
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.pause is not None)
    return sim


def waiting(sim: Sim) -> bool:
    pause = sim.status.pause
    return (
        sim.status.phase == RolloutPhase.PAUSED
        and pause is not None
        and pause.reason == PauseReason.AWAITING_APPROVAL
    )


def test_before_traffic_holds_until_enough_distinct_approvers_of_the_gate() -> None:
    sim = at_gate("BeforeTraffic", [{"setWeight": 25}, {"pause": {"duration": "60s"}}])
    assert waiting(sim)
    since = sim.status.pause.since  # type: ignore[union-attr]
    assert sim.route == Route(stable="1.0.0", candidate="1.1.0", candidate_weight=0)
    assert sim.replicas.get("1.1.0", 0) == 0  # nothing runs for a candidate not approved
    cond = {c.type: c for c in sim.status.conditions or []}["Paused"]
    assert (cond.status, cond.reason) == ("True", "AwaitingApproval")
    assert "0/2 approvals of groups ml-approvers, risk-leads for 1.1.0" in (
        sim.status.message or ""
    )
    assert sim.status.approval is not None and sim.status.approval.counted == 0

    sim.reconcile("promote")  # no promote passes an approval gate
    assert sim.status.last_action is not None
    assert sim.status.last_action.result == ActionResult.REJECTED
    assert "approve" in sim.status.last_action.message

    # Another version, a group the gate does not name, the same user twice: 1 of 2.
    sim.approvals += [
        ok("alice", "1.0.0"),
        ok("carol", "1.1.0", "other-team"),
        ok("alice"),
        ok("alice", "1.1.0", "risk-leads"),
    ]
    for _ in range(5):
        sim.tick(100)  # far past the progress deadline (120 s): people take their time
        assert waiting(sim) and sim.status.pause.since == since  # type: ignore[union-attr]
        assert sim.route == Route(stable="1.0.0", candidate="1.1.0", candidate_weight=0)
    assert sim.status.approval is not None
    assert (sim.status.approval.counted, sim.status.approval.approved_by) == (1, ["alice"])
    assert "(by alice)" in (sim.status.message or "")

    sim.approvals.append(ok("bob"))
    sim.tick()
    assert not waiting(sim)
    assert any(e.reason == "Approved" for e in sim.events)
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 25)
    assert sim.status.approval.counted == 2 and sim.status.approval.awaiting_since is None


def test_before_full_holds_the_last_step_weight_then_promotes_when_approved() -> None:
    sim = at_gate("BeforeFull", [{"setWeight": 50}])
    assert waiting(sim)
    held = Route(stable="1.0.0", candidate="1.1.0", candidate_weight=50)
    assert sim.route == held
    for _ in range(5):
        sim.tick(100)
        assert waiting(sim) and sim.route == held
    sim.reconcile("promote-full")
    assert sim.status.last_action.result == ActionResult.REJECTED  # type: ignore[union-attr]
    sim.approvals += [ok("alice"), ok("bob", "1.1.0", "risk-leads")]
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    assert sim.status.approval is not None and sim.status.approval.approved_by == ["alice", "bob"]


def test_approvals_already_there_do_not_pause() -> None:
    spec = canary_spec([{"setWeight": 50}], gates={"approvals": {"count": 1}})
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.approvals.append(Approval("a", "1.1.0", "alice"))
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    assert not any(
        e.reason == "Approved" for e in sim.events
    )  # never waited, so nothing to announce


def test_promote_is_refused_by_the_shared_rule_while_awaiting_approval() -> None:
    status = RolloutStatus.model_validate(
        {
            "phase": "Paused",
            "stableVersion": "1.0.0",
            "candidateVersion": "1.1.0",
            "pause": {"reason": "AwaitingApproval"},
        }
    )
    for name in ("promote", "promote-full"):
        refused = actions.refusal(name, status, previous_warm=False)
        assert refused is not None and "approval" in refused
    assert actions.refusal("abort", status, previous_warm=False) is None
    assert actions.refusal("pause", status, previous_warm=False) is None


def test_the_cli_claims_only_the_gate_groups_it_has_and_names_an_approval_per_user() -> None:
    from ferryman.cli import approve

    gate = ApprovalGate.model_validate(GATE)
    assert approve.claimed(gate, ["system:authenticated", "risk-leads", "ml-approvers"]) == [
        "ml-approvers",
        "risk-leads",
    ]
    assert approve.claimed(gate, ["other-team"]) == []
    name = approve.name_for("fraud", "1.1.0", "alice")
    assert name == approve.name_for("fraud", "1.1.0", "alice")  # twice: AlreadyExists
    assert (
        len(
            {
                name,
                approve.name_for("fraud", "1.1.0", "bob"),
                approve.name_for("fraud", "1.2.0", "alice"),
            }
        )
        == 3
    )
    assert name.startswith("fraud-") and len(name) <= 253
    # a retried version (an earlier attempt ended) is approved anew, not "already approved"
    ended = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert approve.name_for("fraud", "1.1.0", "alice", ended) != name
    assert approve.name_for("fraud", "1.1.0", "alice", ended) == approve.name_for(
        "fraud", "1.1.0", "alice", ended
    )


def test_an_approval_from_an_earlier_attempt_at_the_version_does_not_count() -> None:
    """Approved, then aborted (a failing metric would roll back the same way), then
    retried: the new attempt needs new approvals, or the version would reach 100% on the
    strength of reviews that predate its failure (review9 F1)."""
    sim = at_gate("BeforeFull", [{"setWeight": 50}, {"pause": {}}])
    assert sim.status.pause is not None and sim.status.pause.reason == PauseReason.STEP
    sim.approvals += [
        Approval("a1", "1.1.0", "alice", ("ml-approvers",), created=sim.now),
        Approval("b1", "1.1.0", "bob", ("risk-leads",), created=sim.now),
    ]
    sim.tick()
    sim.reconcile("abort")
    assert sim.status.phase == RolloutPhase.ABORTED
    sim.tick(10)
    sim.reconcile("retry")
    sim.run_until(lambda s: s.status.pause is not None or s.status.stable_version == "1.1.0")
    sim.reconcile("promote")  # past the pause step, to the gate
    sim.run_until(lambda s: waiting(s) or s.status.stable_version == "1.1.0")
    assert sim.status.stable_version == "1.0.0"
    assert waiting(sim), (sim.status.phase, sim.status.message)
    assert sim.status.approval is not None and sim.status.approval.counted == 0
    # approvals given after the earlier attempt ended count
    sim.approvals += [
        Approval("a2", "1.1.0", "alice", ("ml-approvers",), created=sim.now),
        Approval("b2", "1.1.0", "bob", ("risk-leads",), created=sim.now),
    ]
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


def test_an_approval_does_not_survive_a_retarget_away_and_back() -> None:
    sim = at_gate("BeforeTraffic", [{"setWeight": 50}])
    sim.approvals.append(Approval("a1", "1.1.0", "alice", ("ml-approvers",), created=sim.now))
    sim.tick(5)
    retarget(sim, "1.0.1")
    sim.run_until(lambda s: s.status.candidate_version == "1.0.1")
    sim.tick(5)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.candidate_version == "1.1.0" and waiting(s))
    sim.approvals.append(Approval("b1", "1.1.0", "bob", ("risk-leads",), created=sim.now))
    for _ in range(5):
        sim.tick(10)
        assert waiting(sim), (sim.status.phase, sim.status.message)
    assert sim.status.approval is not None and sim.status.approval.approved_by == ["bob"]


def test_a_new_wait_for_the_same_version_is_a_new_pause() -> None:
    """Aborted while awaiting approval, then retried: the new wait starts now (its own
    pause.since, so its own AwaitingApproval notification), not at the old wait's start."""
    sim = at_gate("BeforeTraffic", [{"setWeight": 50}])
    assert waiting(sim)
    assert sim.status.pause is not None and sim.status.pause.since is not None
    first = sim.status.pause.since
    sim.tick(5)
    sim.reconcile("abort")
    sim.tick(30)
    sim.reconcile("retry")
    sim.run_until(lambda s: s.status.pause is not None)
    assert waiting(sim)
    assert sim.status.pause is not None and sim.status.pause.since is not None
    assert sim.status.pause.since > first


@pytest.mark.parametrize(
    ("strategy", "size", "mirror"),
    [
        ({"blueGreen": {"autoPromotionSeconds": 2}}, 4, 0),
        ({"blueGreen": {"previewMirrorPercent": 50, "autoPromotionSeconds": 2}}, 4, 50),
        ({"shadow": {"mirrorPercent": 50, "duration": "2s", "then": "promote"}}, 2, 50),
    ],
)
def test_before_full_keeps_a_preview_or_shadow_running_while_it_waits(
    strategy: dict[str, object], size: int, mirror: int
) -> None:
    """A blue-green preview or a shadow waiting for approval before promotion keeps the
    candidate it ran (full-size preview, the shadow's share) and its mirror, so analysis
    goes on measuring it (docs/approvals.md) and promotion does not start cold; it was
    scaled to 0 with the mirror dropped (review9 F2)."""
    data = canary_spec([{"setWeight": 50}]).model_dump(by_alias=True, exclude_none=True)
    data["strategy"] = strategy
    data["gates"] = {"approvals": {"count": 1, "at": "BeforeFull"}}
    sim = Sim(RolloutSpec.model_validate(data))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(waiting)
    for _ in range(10):
        sim.tick(10)
        assert waiting(sim)
        assert sim.replicas.get("1.1.0", 0) == size, sim.replicas
        assert sim.route is not None and sim.route.mirror_percent == mirror, sim.route
        assert sim.route.candidate_weight == 0
    sim.approvals.append(Approval("a", "1.1.0", "alice"))
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


def test_before_full_keeps_an_ab_tests_winner_serving_its_users_while_it_waits() -> None:
    """The A/B test's winner keeps its users (and their pods) until it is approved and
    promoted; they went back to stable and its pods to 0 (review9 F2)."""
    from unit.test_abtest_machine import ab_sim, verdict

    sim = ab_sim()
    data = sim.spec.model_dump(by_alias=True, exclude_none=True)
    data["gates"] = {"approvals": {"count": 1, "at": "BeforeFull"}}
    sim.spec = RolloutSpec.model_validate(data)
    sim.tick()
    users = sim.route.users if sim.route else None
    assert users is not None and sim.replicas["1.1.0"] == 1
    verdict(sim, "CandidateWins")
    sim.run_until(waiting)
    for _ in range(10):
        sim.tick(10)
        assert waiting(sim)
        assert sim.replicas.get("1.1.0", 0) == 1, sim.replicas
        assert sim.route is not None and sim.route.users == users, sim.route
    sim.approvals.append(Approval("a", "1.1.0", "alice"))
    measure(sim, Verdict.SUCCESSFUL)
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


@pytest.mark.parametrize("at", ["BeforeTraffic", "BeforeFull"])
def test_a_gate_added_mid_rollout_holds_promotion(at: str) -> None:
    """A gate that is in the spec when the candidate would reach 100% holds it there,
    wherever it says to wait: a BeforeTraffic gate added (or a BeforeFull one switched to
    BeforeTraffic) after traffic moved was met by neither point, and the candidate was
    promoted without any approval (review9 F3; field case 21's kind: never 100% on the
    strength of an edit)."""
    sim = Sim(canary_spec([{"setWeight": 30}, {"pause": {}}]))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.pause is not None)
    assert sim.route is not None and sim.route.candidate_weight == 30
    data = sim.spec.model_dump(by_alias=True, exclude_none=True)
    data["gates"] = {"approvals": {"count": 1, "at": at}}
    sim.spec = RolloutSpec.model_validate(data)
    sim.tick()
    sim.reconcile("promote")
    for _ in range(10):
        sim.tick(5)
        assert sim.status.stable_version == "1.0.0", sim.status.message
    assert waiting(sim), sim.status.message
    sim.approvals.append(Approval("a", "1.1.0", "alice"))
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


def test_switching_a_waiting_gate_to_before_traffic_does_not_promote() -> None:
    sim = at_gate("BeforeFull", [{"setWeight": 50}])
    assert waiting(sim)
    data = sim.spec.model_dump(by_alias=True, exclude_none=True)
    data["gates"]["approvals"]["at"] = "BeforeTraffic"
    sim.spec = RolloutSpec.model_validate(data)
    for _ in range(10):
        sim.tick(5)
        assert sim.status.stable_version == "1.0.0", sim.status.message


def test_an_approval_older_than_the_candidate_modelversion_or_the_rollout_does_not_count() -> None:
    """A ModelVersion deleted and re-created under the same version (another artifact),
    or a Rollout deleted and re-created under the same name, is a new thing to review:
    approvals created before it (or in the same second: creationTimestamps have 1-second
    resolution) do not count; those after do (fix9)."""
    gate = ApprovalGate.model_validate(GATE)
    t = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    old = Approval("a1", "1.1.0", "alice", ("ml-approvers",), created=t)
    new = Approval("b1", "1.1.0", "bob", ("risk-leads",), created=t.replace(second=1))
    status = RolloutStatus(candidate_version="1.1.0")

    def who(*born: datetime | None) -> list[str]:
        after = approvals.counting_after(status, "1.1.0", born)
        return approvals.approvers(gate, [old, new], "1.1.0", after)

    assert who() == ["alice", "bob"]
    assert who(None, None) == ["alice", "bob"]  # creation times unknown
    assert who(t) == ["bob"]  # same second: not after
    assert who(None, t.replace(second=1)) == []
    assert who(t.replace(second=1), t.replace(second=5)) == []


def test_born_is_the_rollout_and_the_candidates_modelversions_not_duplicates() -> None:
    t = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    sim = Sim(canary_spec([{"setWeight": 50}]), rollout_created=t)
    sim.created = {"1.0.0": t.replace(second=3)}
    observed = sim.observed()
    assert approvals.born(observed, "1.0.0") == (t, t.replace(second=3))
    assert approvals.born(observed, "9.9.9") == (t,)


def test_a_recreated_modelversion_needs_new_approvals() -> None:
    """Approved, then the candidate's ModelVersion is deleted and re-created (same
    version, another artifact) while it waits: the old approvals stop counting, and new
    ones let it go on."""
    sim = at_gate("BeforeTraffic", [{"setWeight": 50}])
    assert waiting(sim)
    sim.approvals += [
        Approval("a1", "1.1.0", "alice", ("ml-approvers",), created=sim.now),
        Approval("b1", "1.1.0", "bob", ("risk-leads",), created=sim.now),
    ]
    sim.tick(5)
    sim.created["1.1.0"] = sim.now  # re-created, after the approvals
    sim.tick(5)
    for _ in range(5):
        assert waiting(sim), (sim.status.phase, sim.status.message)
        sim.tick(10)
    assert sim.status.approval is not None and sim.status.approval.counted == 0
    sim.approvals += [
        Approval("a2", "1.1.0", "alice", ("ml-approvers",), created=sim.now),
        Approval("b2", "1.1.0", "bob", ("risk-leads",), created=sim.now),
    ]
    sim.tick(1)
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")


def test_a_recreated_rollout_does_not_inherit_approvals() -> None:
    sim = at_gate("BeforeTraffic", [{"setWeight": 50}])
    sim.approvals += [
        Approval("a1", "1.1.0", "alice", ("ml-approvers",), created=sim.now),
        Approval("b1", "1.1.0", "bob", ("risk-leads",), created=sim.now),
    ]
    sim.rollout_created = sim.now  # same second as the approvals: not after
    for _ in range(5):
        sim.tick(10)
        assert waiting(sim), (sim.status.phase, sim.status.message)
    assert sim.status.approval is not None and sim.status.approval.counted == 0


def test_the_cli_names_an_approval_of_a_recreated_rollout_or_modelversion_anew() -> None:
    """``kubectl ferryman approve`` derives the name from the instant an approval must be
    newer than (``counting_after`` over the Rollout's and the candidate ModelVersion's
    creation), so approving a re-created one is a new approval, not `already approved`;
    without `list` on ModelVersions (403) only the Rollout's creation is known."""
    from types import SimpleNamespace

    from kubernetes.client.exceptions import ApiException

    from cases.api_cases import model_version
    from ferryman.api.modelversion import ModelVersion
    from ferryman.api.rollout import Rollout
    from ferryman.cli import Cli

    t = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    ro = Rollout.model_validate(
        {
            "metadata": {"name": "fraud", "namespace": "risk", "creationTimestamp": t},
            "spec": canary_spec([{"setWeight": 50}]).model_dump(by_alias=True, mode="json"),
        }
    )

    def mv(version: str, second: int, model: str = "fraud", phase: str = "Serving") -> Any:
        doc = model_version(name=f"{model}-{version}-{second}", version=version)
        doc["spec"]["model"] = model
        doc["metadata"]["creationTimestamp"] = t.replace(second=second).isoformat()
        doc["status"] = {"phase": phase}
        return ModelVersion.model_validate(doc)

    listed = [
        mv("1.1.0", 7),
        mv("1.1.0", 9, "other"),
        mv("1.0.0", 8),
        mv("1.1.0", 30, phase="Duplicate"),
    ]
    cli: Any = SimpleNamespace(model_versions=lambda: listed)
    assert Cli.approved_born(cli, ro, "1.1.0") == [t, t.replace(second=7)]

    def forbidden() -> list[Any]:
        raise ApiException(status=403)

    assert Cli.approved_born(SimpleNamespace(model_versions=forbidden), ro, "1.1.0") == [t]  # type: ignore[arg-type]
