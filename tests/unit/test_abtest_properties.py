"""Property tests of the abTest stage (``plan.experiment_stage``) over random sequences of
time, readiness changes, user actions, new targets, crashes and verdicts: the state
machine's invariants (``test_machine_properties.check``) hold, and the A/B route's users
never reach a candidate without Ready pods: no write sends them to one that has none,
and no scale-down takes its last pods while the route still sends them there."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.api.rollout import RolloutSpec, Verdict
from ferryman.api.rollout_experiment import ExperimentStatus, VariantFigures
from unit.machine_sim import Sim, canary_spec
from unit.test_machine_analysis import ANALYSIS, measure
from unit.test_machine_properties import OPS, ROUTERS, check

OUTCOMES = ["CandidateWins", "StableWins", "NoDifference", "NoSignificantDifferenceYet"]
AB_OPS = st.one_of(OPS, st.tuples(st.just("verdict"), st.sampled_from(OUTCOMES)))


@st.composite
def ab_specs(draw: st.DrawFn) -> RolloutSpec:
    users = draw(
        st.sampled_from(
            [
                {
                    "percentOfUsers": {
                        "percent": draw(st.integers(1, 99)),
                        "userId": {"header": "u"},
                    }
                },
                {"header": {"name": "x-beta", "value": "yes"}},
                {"cookie": {"name": "beta", "value": "1"}},
            ]
        )
    )
    ab: dict[str, object] = {
        "users": users,
        "objective": {"successes": "s", "trials": "t", "direction": "HigherIsBetter", "mde": 0.05},
        "onCandidateWins": draw(st.sampled_from(["promote", "report"])),
    }
    if draw(st.booleans()):
        ab["duration"] = f"{draw(st.integers(1, 120))}s"
    base = canary_spec([{"setWeight": 10}], replicas=draw(st.integers(1, 6))).model_dump(
        by_alias=True, exclude_none=True
    )
    router = draw(st.sampled_from(["gatewayAPI", "istio"]))
    base.update(strategy={"abTest": ab}, trafficRouting=ROUTERS[router], analysis=ANALYSIS)
    return RolloutSpec.model_validate(base)


def users_only_on_ready_pods(sim: Sim, since: int) -> None:
    for i, m in enumerate(sim.moments[since:], start=since):
        route = m.route
        if route is None or route.users is None or route.candidate is None:
            continue
        old = sim.moments[i - 1].route if i > 0 else None
        if m.write is not None and m.write[0] == "route" and (old is None or old.users is None):
            assert m.ready.get(route.candidate, 0) >= 1, (m, sim.writes[-8:])
        assert m.replicas.get(route.candidate, 0) >= 1, (m, sim.writes[-8:])


def verdict(sim: Sim, outcome: str) -> None:
    if not sim.status.candidate_version:
        return
    sim.status.experiment = ExperimentStatus(
        outcome=outcome,
        unit="users (one trial per user)",
        stable=VariantFigures(users=1000, successes=100, rate=0.1),
        candidate=VariantFigures(users=1000, successes=100, rate=0.1),
        message=outcome,
        at=sim.now,
    )
    measure(sim, Verdict.SUCCESSFUL)  # guardrail evidence, as analysis would give
    sim.reconcile()


@settings(max_examples=60, deadline=None)
@given(spec=ab_specs(), ops=st.lists(AB_OPS, max_size=40))
def test_ab_invariants_hold_for_any_sequence(
    spec: RolloutSpec, ops: list[tuple[str, object]]
) -> None:
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.stable_version is not None)
    version = 1
    for op, arg in ops:
        before, moments = len(sim.writes), len(sim.moments)
        if op == "tick":
            sim.tick(float(arg))  # type: ignore[arg-type]
        elif op == "unready" and sim.status.candidate_version:
            sim.unready[sim.status.candidate_version] = int(arg)  # type: ignore[call-overload]
            sim.tick(1)
        elif op == "action":
            sim.reconcile(str(arg))
        elif op == "verdict":
            verdict(sim, str(arg))
        elif op == "new-version":
            version += 1
            v = f"1.{version}.0"
            sim.versions.append(v)
            if arg:
                sim.broken.add(v)
            sim.spec = sim.spec.model_copy(
                update={"target": sim.spec.target.model_copy(update={"version": v})}
            )
            sim.reconcile()
        elif op == "crash":
            saved = copy.deepcopy(sim.status)
            sim.tick(1)
            sim.status = saved
            sim.reconcile()
        check(sim, before, moments)
        users_only_on_ready_pods(sim, moments)
    # Left alone with healthy pods, it ends (a verdict, the deadline or the progress
    # deadline) or keeps serving its users with every invariant.
    sim.broken.clear()
    sim.unready.clear()
    for _ in range(5):
        before, moments = len(sim.writes), len(sim.moments)
        sim.tick(200)
        check(sim, before, moments)
        users_only_on_ready_pods(sim, moments)
