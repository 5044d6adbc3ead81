"""The durable audit trail and retention (issue 17 §4, §5) through the real operator and
the real API server: three versions rolled out (one promoted, one rolled back by a real
Prometheus analysis), the Rollout deleted, and ``kubectl ferryman lineage`` / ``history``
still tell which version served when and why each stopped; twelve versions under
``retention: {keepLast: 5, delete: true}``: the right seven go, a pinned one stays until
unpinned, a GitOps-tracked one is only marked, with an Event asking for its removal."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e import rollouts as r
from harness import rbac
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

pytestmark = pytest.mark.usefixtures("ferryman_crds")

ARGO_TRACKING = "argocd.argoproj.io/tracking-id"
PIN = "ferryman.dev/pin"


def ferryman(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("ferryman", *args, check=False, timeout=60)


def mv_status(cluster: Cluster, ns: str, version: str) -> dict[str, Any]:
    obj = cluster.get_json("modelversion", "fraud-" + version.replace(".", "-"), ns)
    return dict((obj or {}).get("status") or {})


def patch(cluster: Cluster, ns: str, spec: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "rollout.ferryman.dev", "fraud", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": spec}),
    )  # fmt: skip


@pytest.mark.prometheus
def test_lineage_and_history_survive_the_rollout(
    cluster: Cluster,
    namespace: str,
    prometheus: PrometheusServer,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        json.dumps(
            {
                "providers": {"default": {"address": prometheus.url}},
                "namespace": rbac.OPERATOR_NAMESPACE,
                "storageInitializerImage": "",
            }
        )
    )
    operator_factory(args=[f"--settings={settings}"]).start()
    ns = namespace
    cluster.apply(r.versions("1.0.0", "1.1.0", "1.2.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="1.0.0")

    # 1.1.0: canary to 50%, promoted by the user.
    r.retarget(cluster, ns, "1.1.0")
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Paused", timeout=60, message="50%")
    promoted = ferryman(cluster, "promote", "fraud", "-n", ns)
    assert promoted.returncode == 0, promoted.stderr
    wait_for(
        lambda: r.status(cluster, ns).get("stableVersion") == "1.1.0",
        timeout=60,
        message="1.1.0 stable",
    )

    # 1.2.0: a metric that always fails (1 > max 0.5): rolled back at the first round.
    failing = {
        "provider": "default",
        "interval": "1s",
        "failureLimit": 0,
        "metrics": [{"name": "error-rate", "query": "vector(1)", "max": 0.5}],
    }
    patch(cluster, ns, {"analysis": failing, "target": {"version": "1.2.0"}})
    wait_for(
        lambda: r.status(cluster, ns).get("phase") == "RolledBack",
        timeout=60,
        message="1.2.0 rolled back by analysis",
    )
    wait_for(
        lambda: (mv_status(cluster, ns, "1.2.0").get("servingHistory") or [{}])[-1].get("ended"),
        timeout=30,
        message="1.2.0's interval closed",
    )

    cluster.kubectl("delete", "rollout.ferryman.dev", "fraud", "-n", ns, "--wait=true", timeout=60)
    wait_for(
        lambda: cluster.get_json("rollout.ferryman.dev", "fraud", ns) is None,
        timeout=30,
        message="Rollout gone",
    )
    wait_for(
        lambda: (
            (mv_status(cluster, ns, "1.1.0").get("servingHistory") or [{}])[-1].get("ended")
            == "RolloutDeleted"
        ),
        timeout=30,
        message="1.1.0's interval closed by the deletion",
    )

    first = mv_status(cluster, ns, "1.0.0")["servingHistory"]
    assert [(i["roles"], i["outcome"], i["ended"], i["replacedBy"]) for i in first] == [
        (["candidate", "stable"], "Promoted", "Replaced", "1.1.0")
    ]
    (second,) = mv_status(cluster, ns, "1.1.0")["servingHistory"]
    assert (second["roles"], second["outcome"]) == (["candidate", "stable"], "Promoted")
    (bad,) = mv_status(cluster, ns, "1.2.0")["servingHistory"]
    assert (bad["outcome"], bad["cause"], bad["ended"]) == ("RolledBack", "Analysis", "RolledBack")
    m = bad["measurement"]
    assert (m["metric"], m["value"], m["verdict"], m["query"]) == (
        "error-rate",
        1,
        "Failed",
        "vector(1)",
    )
    last = mv_status(cluster, ns, "1.2.0")["lastOutcome"]
    assert (last["cause"], last["rollout"], last["measurement"]["value"]) == (
        "Analysis",
        "fraud",
        1,
    )

    # The CLI, with the Rollout gone.
    history = ferryman(cluster, "history", "fraud", "-n", ns)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[0] == "Rollout fraud no longer exists; from its ModelVersions' serving history:"
    rows = lines[2:]
    assert [row.split()[0] for row in rows] == ["1.0.0", "1.1.0", "1.2.0"]
    assert "candidate,stable" in rows[0] and "Replaced" in rows[0]
    assert rows[0].endswith("replaced by 1.1.0")
    assert "RolloutDeleted" in rows[1] and rows[1].endswith("Rollout fraud deleted")
    assert "RolledBack (Analysis)" in rows[2]
    assert "analysis: metric error-rate failed" in rows[2]
    assert "measured error-rate=1 (max 0.5)" in rows[2]

    lineage = ferryman(cluster, "lineage", "fraud", "-n", ns)
    assert lineage.returncode == 0, lineage.stderr
    table, _, served = lineage.stdout.partition(
        "\n\nServing history (from each ModelVersion's status):\n"
    )
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["1.0.0", "1.1.0", "1.2.0"]
    assert served.splitlines()[1:] == rows

    missing = ferryman(cluster, "history", "nope", "-n", ns)
    assert missing.returncode == 1 and "Rollout nope not found" in missing.stderr


def events_of(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "events", "-n", ns, "-o", "json", f"--field-selector=involvedObject.name={name}"
    ).stdout
    return list(json.loads(out)["items"])


def test_retention_keeps_five_of_twelve_deletes_the_rest_but_pinned_and_gitops_tracked(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    versions = [f"1.{k}.0" for k in range(12)]
    mvs = r.versions(*versions)
    mvs[0]["metadata"]["annotations"] = {PIN: "true"}
    mvs[1]["metadata"]["annotations"] = {ARGO_TRACKING: "fraud:ferryman.dev/ModelVersion:x"}
    cluster.apply(mvs, namespace=ns)
    retention = {"keepLast": 5, "delete": True}
    cluster.apply(r.rollout("1.11.0", retention=retention), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")

    def names() -> set[str]:
        out = cluster.kubectl("get", "modelversion", "-n", ns, "-o", "json").stdout
        return {i["metadata"]["name"] for i in json.loads(out)["items"]}

    kept = {"fraud-1-0-0", "fraud-1-1-0", *(f"fraud-1-{k}-0" for k in range(7, 12))}
    wait_for(lambda: names() == kept, timeout=60, message=f"exactly {sorted(kept)} left")

    tracked = mv_status(cluster, ns, "1.1.0")
    assert tracked["phase"] == "Retired"
    (expired,) = [c for c in tracked["conditions"] if c["type"] == "Expired"]
    assert (expired["status"], expired["reason"]) == ("True", "ManagedByGitOps")
    assert "remove it from Git" in expired["message"]
    warning = wait_for(
        lambda: [e for e in events_of(cluster, ns, "fraud-1-1-0") if e["reason"] == "Expired"],
        timeout=15,
        message="Expired event",
    )
    assert warning[0]["type"] == "Warning" and "remove it from Git" in warning[0]["message"]
    deleted = [e for e in events_of(cluster, ns, "fraud") if e["reason"] == "RetentionDeleted"]
    assert len(deleted) == 5 and all("past the retention" in e["message"] for e in deleted)
    assert mv_status(cluster, ns, "1.0.0")["phase"] == "Registered"  # pinned, untouched

    # Unpinned: it goes too (its change wakes the Rollout). The tracked one stays marked.
    cluster.kubectl("annotate", "modelversion", "fraud-1-0-0", "-n", ns, f"{PIN}-")
    wait_for(
        lambda: names() == kept - {"fraud-1-0-0"}, timeout=60, message="1.0.0 deleted once unpinned"
    )
    assert mv_status(cluster, ns, "1.1.0")["phase"] == "Retired"


def test_retention_keeps_the_version_a_deleted_rollouts_kept_deployment_serves(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """Rollout ``fraud`` deleted with ``deletionPolicy: KeepStable`` leaves 1.0.0's
    Deployment serving, orphaned; no Rollout's status names 1.0.0 any more. A Rollout of
    another name with ``retention: {keepLast: 1, delete: true}`` deletes 1.1.0 and 1.2.0
    but keeps 1.0.0, whose Deployment still exists (deleted, its ModelVersion's record of
    what serves would be gone while it serves)."""
    ns = namespace
    cluster.apply(r.versions("1.0.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    cluster.kubectl("delete", "rollout.ferryman.dev", "fraud", "-n", ns, "--wait=true")
    kept = cluster.get_json("deployment", "fraud-1-0-0", ns)
    assert kept is not None and kept["metadata"]["labels"].get("ferryman.dev/orphaned") == "true"

    cluster.apply(r.versions("1.1.0", "1.2.0", "1.3.0"), namespace=ns)
    retention = {"keepLast": 1, "delete": True}
    cluster.apply(r.rollout("1.3.0", name="fraud-next", retention=retention), namespace=ns)

    def names() -> set[str]:
        out = cluster.kubectl("get", "modelversion", "-n", ns, "-o", "json").stdout
        return {i["metadata"]["name"] for i in json.loads(out)["items"]}

    wait_for(
        lambda: r.status(cluster, ns, "fraud-next").get("phase") == "Healthy",
        timeout=60,
        message="fraud-next stable",
    )
    wait_for(
        lambda: names() == {"fraud-1-0-0", "fraud-1-3-0"},
        timeout=60,
        message="1.1.0 and 1.2.0 deleted, 1.0.0 (still deployed) and 1.3.0 kept",
    )
    deleted = [e for e in events_of(cluster, ns, "fraud-next") if e["reason"] == "RetentionDeleted"]
    assert len(deleted) == 2
    assert cluster.get_json("deployment", "fraud-1-0-0", ns) is not None
