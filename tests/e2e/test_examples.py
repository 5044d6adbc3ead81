"""Every Rollout example in examples/rollouts is applied against the real API server with
the real operator and reaches its expected phase: the first version becomes stable, a new
target runs the example's strategy over its router, and promotion (where the strategy
waits for one) makes the new version stable. The route object is read back each time."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferryman.api.annotations import ACTION, ACTION_ID
from harness.images import model_image, with_model_image
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROLLOUTS = sorted((EXAMPLES / "rollouts").glob("*.yaml"))
OLD, NEW = "fraud-detector-1-2-0", "fraud-detector-1-3-0"


def rollout_status(cluster: Cluster, ns: str) -> dict[str, Any]:
    return dict(
        ((cluster.get_json("rollout.ferryman.dev", "fraud-detector", ns) or {}).get("status")) or {}
    )


def route(cluster: Cluster, ns: str, router: str) -> dict[str, Any]:
    """Traffic as the router's object says: {service or version: weight}, plus mirror."""
    if router == "gatewayapi":
        obj = cluster.get_json("httproute", "fraud-detector", ns) or {}
        rule = obj["spec"]["rules"][0]
        out: dict[str, Any] = {b["name"]: b["weight"] for b in rule["backendRefs"]}
        for f in rule.get("filters", []):
            out["mirror"] = (
                f["requestMirror"]["backendRef"]["name"],
                f["requestMirror"]["percent"],
            )
        return out
    if router == "istio":
        obj = cluster.get_json("virtualservice", "fraud-detector", ns) or {}
        http = obj["spec"]["http"][0]
        out = {r["destination"]["host"]: r["weight"] for r in http["route"]}
        if "mirror" in http:
            out["mirror"] = (http["mirror"]["host"], http["mirrorPercentage"]["value"])
        return out
    svc = cluster.get_json("service", "fraud-detector", ns) or {}
    return {"selector-version": svc["spec"]["selector"].get("ferryman.dev/version", "*")}


def condition(status: dict[str, Any], type_: str) -> str | None:
    """The status ("True"/"False") of condition ``type_``, None when absent."""
    return next((c["status"] for c in status.get("conditions") or [] if c["type"] == type_), None)


def promote(cluster: Cluster, ns: str) -> None:
    cluster.kubectl(
        "annotate",
        "--overwrite",
        "rollout.ferryman.dev",
        "fraud-detector",
        "-n",
        ns,
        f"{ACTION}=promote",
        f"{ACTION_ID}={uuid.uuid4()}",
    )


def replicas(cluster: Cluster, ns: str, name: str) -> int:
    obj = cluster.get_json("deployment", name, ns)
    return int(obj["spec"]["replicas"]) if obj else 0


@pytest.mark.parametrize("example", ROLLOUTS, ids=lambda p: p.stem)
def test_example_rolls_out(
    cluster: Cluster, namespace: str, operator: OperatorProcess, example: Path
) -> None:
    strategy, router = example.stem.split("-")
    # The example's ModelVersions as written, or serving FERRYMAN_TEST_MODEL_IMAGE.
    versions = yaml.safe_load_all((EXAMPLES / "modelversions" / "fraud-detector.yaml").read_text())
    written = [v for v in versions if v]
    docs = with_model_image(written)
    cluster.apply(docs, namespace=namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", str(example))
    wait_for(
        lambda: rollout_status(cluster, namespace).get("phase") == "Healthy",
        timeout=60,
        message="first version stable",
    )
    assert rollout_status(cluster, namespace)["stableVersion"] == "1.2.0"
    (server,) = (cluster.get_json("deployment", OLD, namespace) or {})["spec"]["template"]["spec"][
        "containers"
    ]
    assert server["image"] == model_image(written[0]["spec"]["serving"]["image"])
    assert server.get("args") == docs[0]["spec"]["serving"].get("args")
    first = route(cluster, namespace, router)
    assert first in ({OLD: 100}, {"selector-version": "1.2.0"}), first

    patch = json.dumps({"spec": {"target": {"version": "1.3.0"}}})
    cluster.kubectl(
        "patch",
        "rollout.ferryman.dev",
        "fraud-detector",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        patch,
    )
    if strategy == "canary":
        wait_for(
            lambda: rollout_status(cluster, namespace).get("currentStep") == 3,
            timeout=90,
            message="canary paused at its last step",
        )
        st = rollout_status(cluster, namespace)
        assert st["phase"] == "Paused" and st["canaryWeight"] == 50
        if router == "service":
            # The weight is the replica ratio: stable + candidate = replicas (3), so 50%
            # takes ceil(1.5) = 2 candidate pods, and status reports the real share once
            # the stable has shrunk to 1: 2 of 3 Ready pods, 67%.
            assert (replicas(cluster, namespace, OLD), replicas(cluster, namespace, NEW)) == (1, 2)
            assert route(cluster, namespace, router) == {"selector-version": "*"}
            wait_for(
                lambda: (
                    (rollout_status(cluster, namespace).get("weights") or {}).get("candidate") == 67
                ),
                timeout=30,
                message="status weights at the real split 33/67",
            )
        else:
            assert st["weights"]["candidate"] == 50
            assert route(cluster, namespace, router) == {OLD: 50, NEW: 50}
        # The stable sized by ferryman's own plan is Available at the paused step (on
        # plain Services too, where 50% of 3 rounds the candidate's share up): Argo CD
        # shows a healthy canary as Suspended, never Degraded.
        wait_for(
            lambda: condition(rollout_status(cluster, namespace), "Available") == "True",
            timeout=30,
            message="Available=True while paused at 50%",
        )
        promote(cluster, namespace)
    elif strategy == "bluegreen":
        wait_for(
            lambda: rollout_status(cluster, namespace).get("phase") == "Paused",
            timeout=90,
            message="preview Ready",
        )
        preview = cluster.get_json("service", "fraud-detector-preview", namespace) or {}
        assert preview["spec"]["selector"]["ferryman.dev/version"] == "1.3.0"
        assert replicas(cluster, namespace, NEW) == 3
        live = route(cluster, namespace, router)
        if router == "service":
            assert live == {"selector-version": "1.2.0"}
        else:
            assert live[OLD] == 100 and live.get(NEW, 0) == 0
            assert live["mirror"][0] == NEW and live["mirror"][1] == 20
        promote(cluster, namespace)
    else:  # shadow, then: promote
        wait_for(
            lambda: "mirror" in route(cluster, namespace, router), timeout=90, message="mirroring"
        )
        live = route(cluster, namespace, router)
        assert live[OLD] == 100 and live.get(NEW, 0) == 0 and live["mirror"][1] == 50
    wait_for(
        lambda: rollout_status(cluster, namespace).get("stableVersion") == "1.3.0",
        timeout=90,
        message="new version stable",
    )
    st = rollout_status(cluster, namespace)
    assert st["phase"] == "Healthy"
    final = route(cluster, namespace, router)
    assert final in ({NEW: 100}, {"selector-version": "1.3.0"}), final
    if strategy == "bluegreen":
        wait_for(
            lambda: cluster.get_json("service", "fraud-detector-preview", namespace) is None,
            timeout=30,
            message="preview Service removed",
        )
