"""Nothing that can make a status write fail stops safety (issue: safety under
real-world input, kind 1).

- Field case 19: a failing metric whose query is long (2,000+ characters, within the
  CRD's 4,096) is rolled back; the history keeps a shortened reason with a marker.
- A nonce longer than status can hold is handled exactly once.
- A status write the API server refuses (here: a ValidatingAdmissionPolicy, as a
  platform team might install) never holds back the rollback's route write, and is
  reported as a Warning Event and the ``StatusWriteFailed`` condition.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e import rollouts as r
from e2e.test_analysis import (  # the same fixtures and queries as the analysis tests
    ERRORS,
    analysing_operator,  # noqa: F401
    analysis,
    settings_file,  # noqa: F401
    stable_on,
)
from ferryman.api.annotations import ACTION, ACTION_ID
from ferryman.api.common import TRUNCATED
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]

PADDING = 'padding!~"' + "z" * 2000 + '",'
LONG_ERRORS = ERRORS.replace(
    'namespace="{{namespace}}",', 'namespace="{{namespace}}",' + PADDING, 1
)


def test_failing_metric_with_a_long_query_is_rolled_back(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    analysing_operator: OperatorProcess,  # noqa: F811
) -> None:
    """Field case 19."""
    assert 2048 < len(LONG_ERRORS) <= 4096
    metric = {"name": "error-rate", "query": LONG_ERRORS, "max": 0.05}
    cluster.apply(r.versions("1.2.0", "1.3.0"), namespace=namespace)
    cluster.apply(
        r.rollout("1.2.0", analysis=analysis(failureLimit=0, metrics=[metric])),
        namespace=namespace,
    )
    stable_on(cluster, namespace, "1.2.0")
    dataplane.set("1.3.0", error_rate=0.3)
    r.retarget(cluster, namespace, "1.3.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=60,
        message="RolledBack",
    )
    assert r.http_route(cluster, namespace) == {"fraud-1-2-0": 100}
    st = r.status(cluster, namespace)
    reason = st["history"][-1]["reason"]
    assert st["history"][-1]["version"] == "1.3.0" and "error-rate" in reason
    assert reason.endswith(TRUNCATED) or TRUNCATED in reason
    failed = [m for m in st["analysis"]["measurements"] if m["verdict"] == "Failed"]
    assert failed and "z" * 2000 in failed[-1]["query"]  # the rendered query, whole


def test_a_nonce_longer_than_status_holds_is_handled_once(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy", timeout=60, message="up"
    )
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Paused", timeout=60, message="50%"
    )
    nonce = "n" * 300
    cluster.kubectl(
        "annotate",
        "--overwrite",
        "rollout.ferryman.dev",
        "fraud",
        "-n",
        namespace,
        f"{ACTION}=promote",
        f"{ACTION_ID}={nonce}",
    )
    wait_for(
        lambda: r.status(cluster, namespace).get("stableVersion") == "1.1.0",
        timeout=60,
        message="promoted",
    )
    handled = r.status(cluster, namespace)["handledActionId"]
    assert handled.startswith("sha256:") and len(handled) <= 128
    promotes = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector=reason=Promote", "-o", "name"
    ).stdout.split()
    assert len(promotes) == 1


def refuse_rolled_back_status(name: str, namespace: str) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy that refuses any status write recording a RolledBack
    history entry for the Rollouts of ``namespace`` (in-process CEL: no webhook)."""
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["ferryman.dev"],
                            "apiVersions": ["*"],
                            "operations": ["UPDATE"],
                            "resources": ["rollouts/status"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.status) || !has(object.status.history) || "
                        "!object.status.history.exists(h, h.outcome == 'RolledBack')",
                        "message": "test policy: no RolledBack history entries",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]


def test_refused_status_write_never_holds_back_the_rollback(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    analysing_operator: OperatorProcess,  # noqa: F811
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", analysis=analysis(failureLimit=0)), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    policy = f"refuse-rollback-{namespace}"[:63]
    cluster.apply(refuse_rolled_back_status(policy, namespace))
    try:
        time.sleep(2)  # policies take effect after the API server loads them
        dataplane.set("1.1.0", error_rate=0.3)
        r.retarget(cluster, namespace, "1.1.0")
        wait_for(
            lambda: (
                r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
                and r.status(cluster, namespace).get("candidateVersion") is None
                and r.status(cluster, namespace).get("phase") == "RolledBack"
            ),
            timeout=90,
            message="traffic back on 1.0.0 and the essential status written",
        )
        # The condition was written with the essential status (True); the next full write,
        # which no longer carries the refused entry, succeeds and turns it False.
        conds = {c["type"]: c for c in r.status(cluster, namespace).get("conditions") or []}
        assert "StatusWriteFailed" in conds
        wait_for(
            lambda: (
                "test policy"
                in cluster.kubectl(
                    "get", "events", "-n", namespace, "--field-selector=reason=StatusWriteFailed"
                ).stdout
            ),
            timeout=20,
            message="StatusWriteFailed event",
        )
        assert "1.1.0" in (r.status(cluster, namespace).get("rolledBackVersions") or [])
        # The route stays on stable: the rollback is not undone.
        r.holds(
            cluster, namespace, 3, httproute=lambda o: r.route_weights(o) == {"fraud-1-0-0": 100}
        )
    finally:
        cluster.kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            policy,
            "--ignore-not-found",
        )


def test_a_refused_deployment_write_never_holds_back_the_rollback(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    analysing_operator: OperatorProcess,  # noqa: F811
) -> None:
    """A template every Deployment write is refused for (requests above limits) must not
    keep a failing candidate's traffic: the route moves to stable all the same."""
    lenient = {"name": "error-rate", "query": ERRORS, "max": 0.5}
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout("1.0.0", analysis=analysis(failureLimit=0, metrics=[lenient])),
        namespace=namespace,
    )
    stable_on(cluster, namespace, "1.0.0")
    dataplane.set("1.1.0", error_rate=0.3)
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Paused",
        timeout=60,
        message="paused at 50%",
    )
    bad = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    strict = {**lenient, "max": 0.05}
    patch = {"spec": {"template": {"resources": bad}, "analysis": {"metrics": [strict]}}}
    cluster.kubectl(
        "patch",
        "rollout.ferryman.dev",
        "fraud",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    wait_for(
        lambda: (
            r.http_route(cluster, namespace) == {"fraud-1-0-0": 100, "fraud-1-1-0": 0}
            or r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
        ),
        timeout=30,
        message="traffic back on 1.0.0 although Deployment writes are refused",
    )
    st = r.status(cluster, namespace)
    conds = {c["type"]: c for c in st.get("conditions") or []}
    assert conds["ApplyFailed"]["status"] == "True"
