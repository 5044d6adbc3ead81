"""The unit simulator runs each decision through the real executor over its fake
cluster: what only the executor does (the ownership check and its condition, the
order of the writes) shows in simulated rollouts."""

from __future__ import annotations

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import RolloutPhase
from ferryman.handlers import executor
from ferryman.plan.route import Route
from unit.machine_sim import NAME, Sim, canary_spec, retarget

STEPS = [{"setWeight": 50}, {"pause": {}}]


def test_a_route_of_someone_else_gets_the_executors_ownership_condition() -> None:
    sim = Sim(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.blocked = "theirs"
    writes = len(sim.kube.writes)
    sim.tick()
    found = [c for c in sim.status.conditions or [] if c.type == executor.OWNERSHIP]
    assert found and found[0].status == ConditionStatus.TRUE
    assert f"HTTPRoute {NAME}" in found[0].message
    assert sim.kube.writes[writes:] == [("status", "rollouts", NAME)]  # nothing else


def test_an_abort_is_written_route_first_and_each_write_is_a_moment() -> None:
    sim = Sim(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    writes, moments = len(sim.kube.writes), len(sim.moments)
    sim.reconcile("abort")
    kinds = [(op, kind, name) for op, kind, name in sim.kube.writes[writes:]]
    route = kinds.index(("apply", "HTTPRoute", NAME))
    gone = kinds.index(("delete", "Deployment", "fraud-1.1.0"))
    assert route < gone < kinds.index(("status", "rollouts", NAME))
    # The moments: the route moved (the candidate still there), then the candidate went.
    after = sim.moments[moments:]
    assert [m.write for m in after[:2]] == [("route", Route(stable="1.0.0")), ("delete", "1.1.0")]
    assert after[0].replicas.get("1.1.0") == 2 and "1.1.0" not in after[1].replicas
    assert after[-1].write is None  # the end of the reconcile
