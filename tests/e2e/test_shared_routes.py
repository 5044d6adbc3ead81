"""Named rules in a route someone else owns (issue 15 §1), through the real operator and
API server: the platform team's HTTPRoute (two named path rules with filters and
timeouts, applied by its own field manager) carries a canary on one named rule, which
Prometheus analysis rolls back; a hand edit of the managed weights mid-rollout is
written back while the owners' own edit stays; a removed named rule holds the Rollout
with the ``SharedRoute`` condition and an Event; deleting the Rollout leaves the rule on
stable and the route in place. Every other field of the route is identical afterwards.
The simulated data plane reads the named rule, so the analysis measures the traffic the
route really produces; the sampler checks every state of that rule (weights sum to 100,
no weight on unready capacity)."""

from __future__ import annotations

import copy
import json
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

ROUTE = "public"
SHARED = {"gatewayAPI": {"httpRoute": {"name": ROUTE, "rules": ["predict"]}}}


def platform_route() -> dict[str, Any]:
    """The platform team's HTTPRoute: /v1/predict (ferryman's rule) still points at the
    model's live Service, /v1/explain at a Service of their own."""

    def rule(name: str, path: str, backend: str, port: int, timeout: str) -> dict[str, Any]:
        return {
            "name": name,
            "matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "x-route", "value": name}]},
                }
            ],
            "timeouts": {"request": timeout},
            "backendRefs": [{"name": backend, "port": port, "weight": 100}],
        }

    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "labels": {"team": "platform"}},
        "spec": {
            "parentRefs": [{"name": "ml-gateway"}],
            "hostnames": ["ml.acme.example"],
            "rules": [
                rule("explain", "/v1/explain", "explainer", 8080, "30s"),
                rule("predict", "/v1/predict", "fraud", 80, "10s"),
            ],
        },
    }


def route(cluster: Cluster, ns: str) -> dict[str, Any]:
    found = cluster.get_json("httproute", ROUTE, ns)
    assert found is not None, f"HTTPRoute {ROUTE} is gone"
    return found


def unmanaged(obj: dict[str, Any]) -> dict[str, Any]:
    """The route without what ferryman or the API server change: the named rule's
    backends, status and the bookkeeping metadata."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    for key in ("resourceVersion", "generation", "managedFields"):
        out["metadata"].pop(key, None)
    for rule in out["spec"]["rules"]:
        if rule.get("name") == "predict":
            rule.pop("backendRefs", None)
    return out


def predict(cluster: Cluster, ns: str) -> dict[str, int] | None:
    return r.http_route(cluster, ns, ROUTE, "predict")


def json_patch(cluster: Cluster, ns: str, ops: list[dict[str, Any]]) -> None:
    """An edit by hand (kubectl, its own field manager)."""
    cluster.kubectl(
        "patch", "httproute", ROUTE, "-n", ns, "--type=json", "-p", json.dumps(ops),
        "--field-manager=someone",
    )  # fmt: skip


def index_of(cluster: Cluster, ns: str, name: str) -> int:
    rules = route(cluster, ns)["spec"]["rules"]
    return next(i for i, rule in enumerate(rules) if rule.get("name") == name)


def condition(cluster: Cluster, ns: str, type_: str) -> dict[str, Any]:
    conditions = r.status(cluster, ns).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def test_a_canary_on_a_named_rule_of_the_platform_teams_route(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    operator_factory: Callable[..., OperatorProcess],
    settings_file: Path,  # noqa: F811 (the fixture)
) -> None:
    ns = namespace
    dataplane.route, dataplane.rules = ROUTE, ("predict",)
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=platform-team", "-n", ns, "-f", "-",
        input=json.dumps(platform_route()),
    )  # fmt: skip
    operator_factory(args=[f"--settings={settings_file}"]).start()
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    checks = analysis(inconclusiveLimit=10)
    cluster.apply(r.rollout("1.0.0", routing=SHARED, analysis=checks), namespace=ns)
    wait_for(
        lambda: (
            predict(cluster, ns) == {"fraud-1-0-0": 100}
            and r.status(cluster, ns).get("phase") == "Healthy"
        ),
        timeout=60,
        message="first version on the named rule",
    )
    before = unmanaged(route(cluster, ns))
    assert before["spec"]["rules"][1]["filters"] == platform_route()["spec"]["rules"][1]["filters"]
    sampler = r.Sampler(cluster, ns, replicas=2, route=ROUTE, rule="predict")

    r.retarget(cluster, ns, "1.1.0")
    half = {"fraud-1-0-0": 50, "fraud-1-1-0": 50}
    wait_for(
        lambda: predict(cluster, ns) == half and r.status(cluster, ns).get("phase") == "Paused",
        timeout=60,
        message="candidate at 50% on the named rule",
    )
    # The traffic the route produces: half of it to each version, none from "explain".
    wait_for(
        lambda: abs(dataplane.shares.get("1.1.0", 0) - 0.5) < 0.01,
        timeout=5,
        message="the data plane splits the named rule's traffic",
    )
    assert condition(cluster, ns, "SharedRoute")["reason"] == "Managed"

    # By hand, mid-rollout: the weights (ferryman's) and explain's timeout (theirs).
    at = index_of(cluster, ns, "predict")
    json_patch(
        cluster,
        ns,
        [
            {"op": "replace", "path": f"/spec/rules/{at}/backendRefs/0/weight", "value": 80},
            {"op": "replace", "path": f"/spec/rules/{at}/backendRefs/1/weight", "value": 20},
            {"op": "replace", "path": f"/spec/rules/{1 - at}/timeouts/request", "value": "45s"},
        ],
    )
    wait_for(lambda: predict(cluster, ns) == half, timeout=10, message="the weights restored")
    before["spec"]["rules"][1 - at]["timeouts"]["request"] = "45s"  # their edit stays
    assert unmanaged(route(cluster, ns)) == before

    # The named rule removed: held, with a condition and an Event naming it.
    removed = route(cluster, ns)["spec"]["rules"][at]
    json_patch(
        cluster,
        ns,
        [
            {"op": "test", "path": f"/spec/rules/{at}/name", "value": "predict"},
            {"op": "remove", "path": f"/spec/rules/{at}"},
        ],
    )
    wait_for(
        lambda: condition(cluster, ns, "SharedRoute").get("reason") == "RuleMissing",
        timeout=15,
        message="SharedRoute RuleMissing",
    )
    held = condition(cluster, ns, "SharedRoute")
    assert held["status"] == "False" and "no rules entry named predict" in held["message"], held
    st = r.status(cluster, ns)
    assert st["phase"] == "Paused" and st["candidateVersion"] == "1.1.0", st
    assert "blocked: HTTPRoute public has no rules entry named predict" in st["message"]
    r.holds(
        cluster,
        ns,
        2,
        rollout=lambda o: o["status"]["phase"] == "Paused",
        httproute__public=lambda o: all(x.get("name") != "predict" for x in o["spec"]["rules"]),
    )
    events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    assert '"reason": "RuleMissing"' in events
    # Put back (by its owners, at the end of the list) with everything on stable.
    removed["backendRefs"] = [{"name": "fraud-1-0-0", "port": 80, "weight": 100}]
    json_patch(cluster, ns, [{"op": "add", "path": "/spec/rules/-", "value": removed}])
    wait_for(lambda: predict(cluster, ns) == half, timeout=15, message="back to 50% there")
    wait_for(
        lambda: condition(cluster, ns, "SharedRoute").get("reason") == "Managed",
        timeout=10,
        message="SharedRoute Managed again",
    )

    # The candidate goes bad: analysis (on the traffic of the named rule) rolls it back.
    dataplane.set("1.1.0", error_rate=0.3)
    wait_for(
        lambda: r.status(cluster, ns).get("phase") == "RolledBack",
        timeout=60,
        message="RolledBack",
    )
    assert predict(cluster, ns) == {"fraud-1-0-0": 100}
    after = route(cluster, ns)
    # The rules are in another order now (the owners put "predict" back last).
    by_name = {x["name"]: x for x in before["spec"]["rules"]}
    before["spec"]["rules"] = [by_name[x["name"]] for x in after["spec"]["rules"]]
    assert unmanaged(after) == before
    # Never server-side applied: ferryman's only writes there are its JSON patches.
    shown = cluster.kubectl(
        "get", "httproute", ROUTE, "-n", ns, "-o", "json", "--show-managed-fields"
    ).stdout
    fields = json.loads(shown)["metadata"]["managedFields"]
    managers = {(m["manager"], m["operation"]) for m in fields}
    assert ("platform-team", "Apply") in managers and ("ferryman", "Apply") not in managers

    # Deleting the Rollout (KeepStable) leaves the rule on stable and the route theirs.
    cluster.kubectl("delete", "mro", "fraud", "-n", ns, "--wait=true", "--timeout=30s")
    kept = route(cluster, ns)
    assert predict(cluster, ns) == {"fraud-1-0-0": 100}
    assert unmanaged(kept) == before and not kept["metadata"].get("ownerReferences")
    assert cluster.get_json("service", "fraud-1-0-0", ns) is not None  # orphaned, serving
    assert sampler.stop() == []


def test_a_hand_edit_of_a_route_ferryman_owns_is_written_back(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """The same promise for ferryman's own HTTPRoute: weights changed by hand mid-canary
    are applied back, and a route deleted by hand is created again, on the watch event
    (not at a later step)."""
    ns = namespace
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="up")
    sampler = r.Sampler(cluster, ns, replicas=2)
    r.retarget(cluster, ns, "1.1.0")
    half = {"fraud-1-0-0": 50, "fraud-1-1-0": 50}
    wait_for(
        lambda: (
            r.http_route(cluster, ns) == half and r.status(cluster, ns).get("phase") == "Paused"
        ),
        timeout=60,
        message="candidate at 50%",
    )
    edit = [
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 80},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 20},
    ]
    cluster.kubectl("patch", "httproute", "fraud", "-n", ns, "--type=json", "-p", json.dumps(edit))
    wait_for(lambda: r.http_route(cluster, ns) == half, timeout=10, message="weights restored")
    cluster.kubectl("delete", "httproute", "fraud", "-n", ns)
    wait_for(lambda: r.http_route(cluster, ns) == half, timeout=10, message="route recreated")
    assert r.status(cluster, ns)["phase"] == "Paused"  # still at the indefinite pause
    assert sampler.stop() == []


def test_an_abort_on_a_named_route_of_a_shared_virtualservice(
    cluster: Cluster, namespace: str, dataplane: DataPlane, operator: OperatorProcess
) -> None:
    """The same with Istio: ferryman moves the weights of the VirtualService's HTTP route
    named "primary" only, a hand edit of them is written back, an abort returns it to
    stable, and every other field (the other route, matches, timeout, retries, the
    owners' header rewrite) is as the platform team applied it."""
    ns = namespace
    dataplane.route, dataplane.rules = ROUTE, ("primary",)

    def dest(host: str, weight: int) -> dict[str, Any]:
        return {"destination": {"host": host, "port": {"number": 80}}, "weight": weight}

    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": ROUTE},
        "spec": {
            "hosts": ["ml.acme.example"],
            "gateways": ["ml-gateway"],
            "http": [
                {"name": "explain", "match": [{"uri": {"prefix": "/v1/explain"}}],
                 "route": [dest("explainer", 100)]},
                {"name": "primary", "match": [{"uri": {"prefix": "/v1/predict"}}],
                 "timeout": "10s", "retries": {"attempts": 2, "perTryTimeout": "3s"},
                 "headers": {"request": {"set": {"x-route": "primary"}}},
                 "route": [dest("fraud", 100)]},
            ],
        },
    }  # fmt: skip
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=platform-team", "-n", ns, "-f", "-",
        input=json.dumps(vs),
    )  # fmt: skip
    routing = {"istio": {"virtualService": {"name": ROUTE, "routes": ["primary"]}}}
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0", routing=routing), namespace=ns)

    def primary() -> dict[str, int]:
        found = cluster.get_json("virtualservice", ROUTE, ns) or {"spec": {"http": []}}
        http = [h for h in found["spec"]["http"] if h.get("name") == "primary"]
        return {d["destination"]["host"]: d["weight"] for d in http[0]["route"]} if http else {}

    def theirs() -> dict[str, Any]:
        found = copy.deepcopy(cluster.get_json("virtualservice", ROUTE, ns) or {})
        for http in found["spec"]["http"]:
            if http["name"] == "primary":
                http.pop("route")
        return {"spec": found["spec"], "labels": found["metadata"].get("labels")}

    wait_for(
        lambda: (
            primary() == {"fraud-1-0-0": 100} and r.status(cluster, ns).get("phase") == "Healthy"
        ),
        timeout=60,
        message="first version on the named route",
    )
    before = theirs()
    r.retarget(cluster, ns, "1.1.0")
    half = {"fraud-1-0-0": 50, "fraud-1-1-0": 50}
    wait_for(
        lambda: primary() == half and r.status(cluster, ns).get("phase") == "Paused",
        timeout=60,
        message="candidate at 50% on the named route",
    )
    wait_for(
        lambda: abs(dataplane.shares.get("1.1.0", 0) - 0.5) < 0.01,
        timeout=5,
        message="the data plane splits the named route's traffic",
    )
    edit = [{"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 90},
            {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 10}]  # fmt: skip
    cluster.kubectl(
        "patch", "virtualservice", ROUTE, "-n", ns, "--type=json", "-p", json.dumps(edit)
    )
    wait_for(lambda: primary() == half, timeout=10, message="the weights restored")
    r.act(cluster, ns, "abort")
    wait_for(lambda: primary() == {"fraud-1-0-0": 100}, timeout=30, message="aborted")
    wait_for(lambda: dataplane.shares == {"1.0.0": 1.0}, timeout=5, message="all traffic on stable")
    assert theirs() == before
