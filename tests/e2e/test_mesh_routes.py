"""East-west (mesh) traffic, issue 15 §2, through the real operator and API server: a
Rollout whose Gateway API parentRefs mix a Gateway and its live Service (GAMMA) gets two
HTTPRoutes, ``fraud`` (the Gateway's) and ``fraud.mesh`` (the Service's); both move in
the same step and both return to stable on an analysis rollback. The simulated data plane
sends half its requests through the Gateway and half as in-cluster calls to the live
Service (``harness.dataplane``: routed by the GAMMA route, as a mesh would), so the
analysis sees, and the test checks, the traffic each route produces; a sampler on each
route checks every state (weights sum to 100, no weight on unready capacity)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e import rollouts as r
from e2e.test_analysis import analysis, settings_file  # noqa: F401 (a fixture)
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]

MESH = "fraud.mesh"
GAMMA = {
    "gatewayAPI": {
        "parentRefs": [{"name": "ml-gateway"}, {"group": "", "kind": "Service", "name": "fraud"}],
        "hostnames": ["fraud.acme.example"],
    }
}
STABLE = {"fraud-1-0-0": 100}
HALF = {"fraud-1-0-0": 50, "fraud-1-1-0": 50}


def near(split: dict[str, float], want: dict[str, float]) -> bool:
    return all(abs(split.get(v, 0.0) - w) < 0.01 for v, w in want.items())


def test_gateway_and_mesh_routes_move_and_roll_back_together(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    operator_factory: Callable[..., OperatorProcess],
    settings_file: Path,  # noqa: F811 (the fixture)
) -> None:
    ns = namespace
    dataplane.traffic = {"gateway": 0.5, "mesh": 0.5}
    operator_factory(args=[f"--settings={settings_file}"]).start()
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    checks = analysis(inconclusiveLimit=10)
    cluster.apply(r.rollout("1.0.0", routing=GAMMA, analysis=checks), namespace=ns)

    def routes() -> tuple[dict[str, int] | None, dict[str, int] | None]:
        return r.http_route(cluster, ns), r.http_route(cluster, ns, MESH)

    wait_for(
        lambda: routes() == (STABLE, STABLE) and r.status(cluster, ns).get("phase") == "Healthy",
        timeout=60,
        message="both routes on the first version",
    )
    mesh: Any = cluster.get_json("httproute", MESH, ns)
    assert mesh["spec"]["parentRefs"] == [
        {"group": "", "kind": "Service", "name": "fraud", "port": 80}
    ]
    assert "hostnames" not in mesh["spec"]
    assert mesh["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ferryman"
    gateway: Any = cluster.get_json("httproute", "fraud", ns)
    assert [p["name"] for p in gateway["spec"]["parentRefs"]] == ["ml-gateway"]
    samplers = [r.Sampler(cluster, ns, replicas=2, route=name) for name in ("fraud", MESH)]

    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: routes() == (HALF, HALF) and r.status(cluster, ns).get("phase") == "Paused",
        timeout=60,
        message="both routes at 50% in the step",
    )
    # The traffic each route produces: half of the Gateway's and half of the in-cluster
    # calls to the live Service reach the candidate.
    half = {"1.0.0": 0.5, "1.1.0": 0.5}
    wait_for(
        lambda: (
            near(dataplane.by_source.get("gateway", {}), half)
            and near(dataplane.by_source.get("mesh", {}), half)
        ),
        timeout=5,
        message="the data plane splits gateway and mesh traffic",
    )
    assert r.status(cluster, ns)["weights"]["candidate"] == 50

    # A hand edit of the mesh route is written back, a deleted one created again.
    cluster.kubectl(
        "patch", "httproute", MESH, "-n", ns, "--type=json", "-p",
        '[{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 80},'
        ' {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 20}]',
    )  # fmt: skip
    wait_for(lambda: routes() == (HALF, HALF), timeout=10, message="mesh weights restored")
    cluster.kubectl("delete", "httproute", MESH, "-n", ns)
    wait_for(lambda: routes() == (HALF, HALF), timeout=10, message="mesh route recreated")

    # The candidate goes bad: the rollback returns both routes to stable.
    dataplane.set("1.1.0", error_rate=0.3)
    wait_for(
        lambda: r.status(cluster, ns).get("phase") == "RolledBack",
        timeout=60,
        message="RolledBack",
    )
    assert routes() == (STABLE, STABLE)
    wait_for(
        lambda: (
            near(dataplane.by_source.get("mesh", {}), {"1.0.0": 1.0})
            and near(dataplane.by_source.get("gateway", {}), {"1.0.0": 1.0})
        ),
        timeout=5,
        message="all traffic back on stable",
    )
    assert [s.stop() for s in samplers] == [[], []]

    # The Service parent removed: its route is deleted, the Gateway's stays.
    gateway_only = {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}}
    cluster.apply(r.rollout("1.0.0", routing=gateway_only, analysis=checks), namespace=ns)
    wait_for(
        lambda: cluster.get_json("httproute", MESH, ns) is None,
        timeout=15,
        message="the mesh route deleted",
    )
    assert r.http_route(cluster, ns) == STABLE


def test_a_gateway_route_alone_leaves_mesh_traffic_on_stable(
    cluster: Cluster, namespace: str, dataplane: DataPlane, operator: OperatorProcess
) -> None:
    """Why the Service parent exists: with Gateway parents only, in-cluster calls to the
    live Service reach the stable version whatever the step (docs/traffic.md)."""
    ns = namespace
    dataplane.traffic = {"gateway": 0.5, "mesh": 0.5}
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="up")
    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: (
            r.http_route(cluster, ns) == HALF and r.status(cluster, ns).get("phase") == "Paused"
        ),
        timeout=60,
        message="candidate at 50%",
    )
    wait_for(
        lambda: (
            near(dataplane.by_source.get("gateway", {}), {"1.1.0": 0.5})
            and near(dataplane.by_source.get("mesh", {}), {"1.0.0": 1.0, "1.1.0": 0.0})
        ),
        timeout=5,
        message="gateway traffic split, mesh traffic all on stable",
    )
    assert cluster.get_json("httproute", MESH, ns) is None


def test_istio_gateway_and_mesh_virtualservices_move_and_abort_together(
    cluster: Cluster, namespace: str, dataplane: DataPlane, operator: OperatorProcess
) -> None:
    """The same with Istio: ``gateways: [ml-gateway, mesh]`` gives the gateway
    VirtualService ``fraud`` and ``fraud.mesh`` for the ``mesh`` gateway (host: the live
    Service), which move in the same step and return to stable on an abort; dropping
    ``mesh`` deletes the mesh one."""
    ns = namespace
    dataplane.traffic = {"gateway": 0.5, "mesh": 0.5}
    routing = {"istio": {"hosts": ["fraud.acme.example"], "gateways": ["ml-gateway", "mesh"]}}
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0", routing=routing), namespace=ns)

    def weights(name: str) -> dict[str, int] | None:
        found = cluster.get_json("virtualservice", name, ns)
        if found is None:
            return None
        return {d["destination"]["host"]: d["weight"] for d in found["spec"]["http"][0]["route"]}

    def both() -> tuple[dict[str, int] | None, dict[str, int] | None]:
        return weights("fraud"), weights(MESH)

    wait_for(
        lambda: both() == (STABLE, STABLE) and r.status(cluster, ns).get("phase") == "Healthy",
        timeout=60,
        message="both VirtualServices on the first version",
    )
    mesh: Any = cluster.get_json("virtualservice", MESH, ns)
    assert mesh["spec"]["gateways"] == ["mesh"]
    assert mesh["spec"]["hosts"] == [f"fraud.{ns}.svc.cluster.local"]
    gateway: Any = cluster.get_json("virtualservice", "fraud", ns)
    assert gateway["spec"]["gateways"] == ["ml-gateway"]

    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: both() == (HALF, HALF) and r.status(cluster, ns).get("phase") == "Paused",
        timeout=60,
        message="both VirtualServices at 50% in the step",
    )
    half = {"1.0.0": 0.5, "1.1.0": 0.5}
    wait_for(
        lambda: (
            near(dataplane.by_source.get("gateway", {}), half)
            and near(dataplane.by_source.get("mesh", {}), half)
        ),
        timeout=5,
        message="the data plane splits gateway and mesh traffic",
    )

    r.act(cluster, ns, "abort")
    wait_for(
        lambda: r.status(cluster, ns).get("phase") == "Aborted",
        timeout=30,
        message="Aborted",
    )
    assert both() == (STABLE, STABLE)
    wait_for(
        lambda: near(dataplane.by_source.get("mesh", {}), {"1.0.0": 1.0}),
        timeout=5,
        message="mesh traffic back on stable",
    )

    gateway_only = {"istio": {"hosts": ["fraud.acme.example"], "gateways": ["ml-gateway"]}}
    cluster.apply(r.rollout("1.0.0", routing=gateway_only), namespace=ns)
    wait_for(
        lambda: cluster.get_json("virtualservice", MESH, ns) is None,
        timeout=15,
        message="the mesh VirtualService deleted",
    )


def grpc_versions(*versions: str) -> list[dict[str, Any]]:
    """ModelVersions serving gRPC on port 9000 next to HTTP."""
    out = r.versions(*versions)
    for mv in out:
        mv["spec"]["serving"]["ports"] = [
            {"name": "grpc", "containerPort": 9000, "appProtocol": "grpc"}
        ]
    return out


def grpc_route(cluster: Cluster, ns: str, name: str = "fraud") -> dict[str, int] | None:
    found = cluster.get_json("grpcroute", name, ns)
    if found is None:
        return None
    return {b["name"]: b["weight"] for b in found["spec"]["rules"][0]["backendRefs"]}


def test_a_grpc_port_gets_a_grpcroute_and_a_canary_completes_on_it(
    cluster: Cluster, namespace: str, dataplane: DataPlane, operator: OperatorProcess
) -> None:
    """Issue 15 §3: versions with a serving port of appProtocol grpc get a GRPCRoute
    (Gateway parent, the versions' Services on port 9000) whose weights move with the
    HTTPRoute's through every step to promotion; gRPC calls through the Gateway (the
    data plane's ``grpc`` source) follow it. The Istio router cannot route that port:
    its GRPCRoute condition says so."""
    ns = namespace
    dataplane.traffic = {"gateway": 0.5, "grpc": 0.5}
    cluster.apply(grpc_versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)
    wait_for(
        lambda: (
            grpc_route(cluster, ns) == STABLE and r.status(cluster, ns).get("phase") == "Healthy"
        ),
        timeout=60,
        message="the GRPCRoute on the first version",
    )
    route: Any = cluster.get_json("grpcroute", "fraud", ns)
    assert [p["name"] for p in route["spec"]["parentRefs"]] == ["ml-gateway"]
    assert {b["port"] for b in route["spec"]["rules"][0]["backendRefs"]} == {9000}
    routed = [c for c in r.status(cluster, ns)["conditions"] if c["type"] == "GRPCRoute"]
    assert [(c["status"], c["reason"]) for c in routed] == [("True", "Routed")]

    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: (
            grpc_route(cluster, ns) == HALF
            and r.http_route(cluster, ns) == HALF
            and r.status(cluster, ns).get("phase") == "Paused"
        ),
        timeout=60,
        message="GRPCRoute and HTTPRoute at 50%",
    )
    wait_for(
        lambda: near(dataplane.by_source.get("grpc", {}), {"1.0.0": 0.5, "1.1.0": 0.5}),
        timeout=5,
        message="the data plane splits gRPC traffic",
    )
    r.act(cluster, ns, "promote")
    done = {"fraud-1-1-0": 100}
    wait_for(
        lambda: (
            grpc_route(cluster, ns) == done
            and r.status(cluster, ns).get("stableVersion") == "1.1.0"
            and r.status(cluster, ns).get("phase") == "Healthy"
        ),
        timeout=60,
        message="the canary completed on the GRPCRoute",
    )
    assert r.http_route(cluster, ns) == done

    # A version without the gRPC port: its canary keeps gRPC on stable (PortMismatch), and
    # once it is promoted no version asks for the GRPCRoute: it is deleted.
    cluster.apply(r.versions("1.2.0"), namespace=ns)
    r.retarget(cluster, ns, "1.2.0")
    wait_for(
        lambda: (
            r.http_route(cluster, ns) == {"fraud-1-1-0": 50, "fraud-1-2-0": 50}
            and r.status(cluster, ns).get("phase") == "Paused"
        ),
        timeout=60,
        message="1.2.0 at 50% on HTTP",
    )
    assert grpc_route(cluster, ns) == done
    routed = [c for c in r.status(cluster, ns)["conditions"] if c["type"] == "GRPCRoute"]
    assert [(c["status"], c["reason"]) for c in routed] == [("False", "PortMismatch")]
    r.act(cluster, ns, "promote")
    wait_for(
        lambda: (
            cluster.get_json("grpcroute", "fraud", ns) is None
            and r.status(cluster, ns).get("stableVersion") == "1.2.0"
        ),
        timeout=60,
        message="the GRPCRoute deleted once no version serves gRPC",
    )


def test_istio_says_it_does_not_route_a_grpc_port(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    cluster.apply(grpc_versions("1.0.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0", routing=r.ISTIO), namespace=ns)

    def grpc_condition() -> dict[str, Any]:
        found = [
            c for c in r.status(cluster, ns).get("conditions") or [] if c["type"] == "GRPCRoute"
        ]
        return found[0] if found else {}

    wait_for(
        lambda: grpc_condition().get("reason") == "NotSupported",
        timeout=60,
        message="GRPCRoute NotSupported",
    )
    assert grpc_condition()["status"] == "False"
    assert "does not route the gRPC port 9000" in grpc_condition()["message"]


def test_gamma_with_a_grpc_port_gets_a_mesh_grpcroute_on_the_live_services_grpc_port(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """Gateway and Service parents with a gRPC port: four routes, the mesh GRPCRoute's
    parent is the live Service on the gRPC port, and the API server takes them all."""
    ns = namespace
    cluster.apply(grpc_versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0", routing=GAMMA), namespace=ns)
    wait_for(
        lambda: (
            grpc_route(cluster, ns, MESH) == STABLE
            and grpc_route(cluster, ns) == STABLE
            and r.http_route(cluster, ns, MESH) == STABLE
        ),
        timeout=60,
        message="HTTPRoutes and GRPCRoutes on the first version",
    )
    mesh: Any = cluster.get_json("grpcroute", MESH, ns)
    assert mesh["spec"]["parentRefs"] == [
        {"group": "", "kind": "Service", "name": "fraud", "port": 9000}
    ]
    live: Any = cluster.get_json("service", "fraud", ns)
    assert {p["port"]: p.get("appProtocol") for p in live["spec"]["ports"]}[9000] == "grpc"
    r.retarget(cluster, ns, "1.1.0")
    wait_for(
        lambda: grpc_route(cluster, ns, MESH) == HALF and r.http_route(cluster, ns, MESH) == HALF,
        timeout=60,
        message="the mesh routes at 50%",
    )
    r.act(cluster, ns, "abort")
    wait_for(
        lambda: (
            [grpc_route(cluster, ns, n) for n in ("fraud", MESH)] == [STABLE, STABLE]
            and r.status(cluster, ns).get("phase") == "Aborted"
        ),
        timeout=30,
        message="both GRPCRoutes back on stable",
    )
