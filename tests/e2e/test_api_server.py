"""The API server enforces what ferryman relies on: CEL rules with their own messages,
and the upstream Gateway API and Istio CRDs with their own validation."""

from __future__ import annotations

from typing import Any

from harness.kube import Cluster


def widget(name: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": "smoke.ferryman.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


def test_cel_rule_rejects_an_update_with_its_message(
    cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    cluster.apply(widget("w", 1), namespace=namespace)
    # Re-applying the same spec is fine: self == oldSelf holds.
    cluster.apply(widget("w", 1), namespace=namespace)
    result = cluster.apply(widget("w", 2), namespace=namespace, check=False)
    assert result.returncode != 0
    assert "spec is immutable: create a new Widget instead" in result.stderr
    assert cluster.get_json("widget", "w", namespace)["spec"]["size"] == 1  # type: ignore[index]


def http_route(percent: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"fraud-{percent}"},
        "spec": {
            "parentRefs": [{"name": "ml-gateway"}],
            "hostnames": ["fraud.acme.example"],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "fraud-stable", "port": 80, "weight": 90},
                        {"name": "fraud-canary", "port": 80, "weight": 10},
                    ],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {"name": "fraud-canary", "port": 80},
                                "percent": percent,
                            },
                        }
                    ],
                }
            ],
        },
    }


def test_gateway_api_httproute_with_weights_and_mirror_percent(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(http_route(20), namespace=namespace)
    route = cluster.get_json("httproute", "fraud-20", namespace)
    assert route is not None
    rule = route["spec"]["rules"][0]
    assert [b["weight"] for b in rule["backendRefs"]] == [90, 10]
    assert rule["filters"][0]["requestMirror"]["percent"] == 20


def test_gateway_api_rejects_mirror_percent_over_100(cluster: Cluster, namespace: str) -> None:
    result = cluster.apply(http_route(150), namespace=namespace, check=False)
    assert result.returncode != 0
    assert "percent" in result.stderr and "100" in result.stderr, result.stderr
    assert cluster.get_json("httproute", "fraud-150", namespace) is None


def test_istio_virtualservice_with_weights_and_mirror(cluster: Cluster, namespace: str) -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "fraud"},
        "spec": {
            "hosts": ["fraud.acme.example"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "fraud-stable"}, "weight": 90},
                        {"destination": {"host": "fraud-canary"}, "weight": 10},
                    ],
                    "mirror": {"host": "fraud-canary"},
                    "mirrorPercentage": {"value": 20.0},
                }
            ],
        },
    }
    cluster.apply(vs, namespace=namespace)
    got = cluster.get_json("virtualservice", "fraud", namespace)
    assert got is not None
    http = got["spec"]["http"][0]
    assert [r["weight"] for r in http["route"]] == [90, 10]
    assert http["mirror"]["host"] == "fraud-canary"
    assert http["mirrorPercentage"]["value"] == 20
