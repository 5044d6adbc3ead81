"""review8's repros: faults found reviewing the int8 branch (artifact stores, companion
and shared routes, the abTest strategy, autoscaling), each a test that failed before its
fix (or is marked xfail strict while unfixed)."""

from __future__ import annotations

from typing import Any

from cases.api_cases import AB_TEST
from ferryman.api.rollout import PauseReason, RolloutPhase, Verdict
from unit.machine_sim import Sim, retarget
from unit.test_abtest_machine import GATEWAY, ab_sim
from unit.test_machine_analysis import ANALYSIS, measure
from unit.test_machine_strategies import spec_with


def test_r1_a_users_pause_keeps_the_ab_tests_users_on_the_candidate() -> None:
    """docs/rollouts.md "Pause and resume": a pause holds the rollout where it is and the
    route keeps what it carries. An abTest's route lost its users' rule under a pause
    (every user back on stable, the experiment still counting)."""
    sim = ab_sim()
    users = sim.route.users if sim.route else None
    assert users is not None
    sim.reconcile("pause")
    for _ in range(3):
        sim.tick(5)
        assert sim.status.phase == RolloutPhase.PAUSED
        assert sim.route is not None and sim.route.users == users
        assert sim.route.candidate_weight == 0
    sim.unready["1.1.0"] = 1  # held only while Ready: unready pods lose the users
    sim.tick()
    sim.tick()
    assert sim.route is not None and sim.route.users is None
    sim.unready.clear()
    sim.tick()
    sim.tick()
    assert sim.route is not None and sim.route.users == users
    sim.reconcile("resume")
    sim.tick()
    assert sim.route is not None and sim.route.users == users


def test_r2_an_analysis_hold_keeps_the_ab_tests_users_on_the_candidate() -> None:
    """docs/rollouts.md: inconclusive rounds pause the Rollout "keeping traffic where it
    is". An abTest's users went back to stable under that hold."""
    sim = ab_sim()
    users = sim.route.users if sim.route else None
    measure(sim, Verdict.INCONCLUSIVE)
    measure(sim, Verdict.INCONCLUSIVE)
    sim.tick()
    assert sim.status.pause is not None and sim.status.pause.reason == PauseReason.INCONCLUSIVE
    assert sim.route is not None and sim.route.users == users


def test_r3_a_paused_canary_edited_to_an_ab_test_has_no_live_weight() -> None:
    """A paused canary at 50% whose strategy becomes an abTest: the abTest stage carries
    no per-request weight (as a shadow or preview stage under a pause, docs/rollouts.md);
    half of every request stayed on the candidate, whoever the user."""
    spec = spec_with({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, GATEWAY)
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 50)
    sim.reconcile("pause")
    data = sim.spec.model_dump(by_alias=True, exclude_none=True)
    data["strategy"], data["analysis"] = AB_TEST, ANALYSIS
    sim.spec = type(sim.spec).model_validate(data)
    sim.tick()
    assert sim.status.phase == RolloutPhase.PAUSED
    assert sim.route is not None and sim.route.candidate_weight == 0
    assert sim.status.weights is not None and sim.status.weights.candidate == 0


GRPC_PORTS = [
    {"name": "http", "containerPort": 8080},
    {"name": "grpc", "containerPort": 9000, "appProtocol": "grpc"},
]


def _versions_with_an_old_one_without_grpc() -> dict[str, Any]:
    """ModelVersions of the model as the handler lists them (every registered one): 0.9.0,
    long retired, without a gRPC port; 1.0.0 (stable) and 1.1.0 (candidate) with one."""
    from cases.api_cases import model_version
    from ferryman.api.modelversion import ModelVersion

    out: dict[str, Any] = {}
    for version in ("0.9.0", "1.0.0", "1.1.0"):
        m = model_version(f"fraud-{version.replace('.', '-')}", version)
        if version != "0.9.0":
            m["spec"]["serving"]["ports"] = GRPC_PORTS
        out[version] = ModelVersion.model_validate(m)
    return out


def test_r4_a_retired_version_without_grpc_does_not_change_what_the_grpc_condition_says() -> None:
    """The GRPCRoute condition was computed over every registered ModelVersion of the
    model, while the GRPCRoutes follow the stable and the candidate: an old version
    without a gRPC port made it say PortMismatch ("gRPC traffic stays on the stable
    version") while the GRPCRoute split gRPC to the candidate."""
    from datetime import UTC, datetime

    from ferryman.handlers import companions
    from unit import test_executor as t

    sim = t.paused_at_ten()
    rollout = t.rollout_of(sim)
    gateway = rollout.spec.traffic_routing.gateway_api
    assert gateway is not None and gateway.parent_refs is not None
    by_version = _versions_with_an_old_one_without_grpc()
    status = rollout.status
    assert (status.stable_version, status.candidate_version) == ("1.0.0", "1.1.0")
    assert sim.route is not None
    port, grpc_route = companions._grpc(by_version, sim.route)
    assert port == 9000 and grpc_route.candidate_weight == 10  # gRPC is split
    companions.condition(rollout, status, t.router(rollout), by_version, datetime.now(UTC))
    (cond,) = [c for c in status.conditions or [] if c.type == "GRPCRoute"]
    assert (cond.status, cond.reason) == ("True", "Routed"), cond.message


def test_r4_a_foreign_grpcroute_blocks_even_with_a_retired_version_without_grpc() -> None:
    """``companions.blocked`` asked for the GRPCRoutes only when every registered version
    agreed on the gRPC port: with an old one without it, a GRPCRoute named after the
    Rollout that is someone else's did not block, and the step then failed to write."""
    import asyncio

    from ferryman.handlers import companions
    from unit import test_executor as t

    sim = t.paused_at_ten()
    rollout = t.rollout_of(sim)
    kube = t.cluster(sim, rollout)
    kube.put(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GRPCRoute",
            "metadata": {"name": t.NAME, "namespace": t.NS, "labels": {}},
            "spec": {},
        }
    )
    by_version = _versions_with_an_old_one_without_grpc()
    why = asyncio.run(
        companions.blocked(kube, None, t.router(rollout), rollout, {}, 0.0, by_version.values())
    )
    assert why is not None and "GRPCRoute" in why


def test_r5_an_autoscaler_growing_replicas_keeps_the_ab_tests_users_on_the_candidate() -> None:
    """docs/experiments.md: "a user keeps their variant for as long as their id and the
    percent stay the same"; docs/autoscaling.md: a weight the candidate carried at the
    smaller count stays while an autoscaler grows spec.replicas. An HPA raising replicas
    4 -> 8 sent a cohort's users back to stable until the 4 new candidate pods were Ready
    (the 4 that carried them were Ready all along)."""
    sim = ab_sim(users={"header": {"name": "x-beta", "value": "true"}})
    users = sim.route.users if sim.route else None
    assert users is not None and sim.available["1.1.0"] == 4
    sim.spec = sim.spec.model_copy(update={"replicas": 8})
    sim.reconcile()
    assert sim.replicas["1.1.0"] == 8
    assert sim.route is not None and sim.route.users == users


def test_r6_keep_stable_moves_the_mesh_route_off_the_candidate_before_anything_goes() -> None:
    """docs/traffic-mesh.md: KeepStable keeps the main route (100% on stable); the
    companions go with the Rollout (owner references). Deleted mid-canary, the mesh route
    `<rollout>.mesh` still sent 10% of east-west calls to the candidate while the garbage
    collector deletes both it and the candidate's Deployment, in no set order: calls to a
    candidate without pods until the route goes."""
    import asyncio

    from ferryman.handlers import orphans
    from ferryman.routing import router_for
    from unit.machine_sim import canary_spec

    parents = [{"name": "gw"}, {"group": "", "kind": "Service", "name": "fraud"}]
    spec = canary_spec(
        [{"setWeight": 10}, {"pause": {}}],
        trafficRouting={"gatewayAPI": {"parentRefs": parents}},
    )
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.route is not None and s.route.candidate_weight == 10)
    key = ("gateway.networking.k8s.io/v1", "HTTPRoute", "ml", "fraud.mesh")
    mesh = sim.kube.objects[key]
    backends = mesh["spec"]["rules"][0]["backendRefs"]
    assert [b["weight"] for b in backends] == [90, 10]  # the split, east-west
    rollout = sim.rollout()
    asyncio.run(orphans.keep_stable(sim.kube, rollout, router_for(rollout.spec), "fraud-1.0.0"))
    after = sim.kube.objects.get(key)
    if after is not None:
        weights = {b["name"]: b["weight"] for b in after["spec"]["rules"][0]["backendRefs"]}
        assert weights.get("fraud-1.1.0", 0) == 0, weights
