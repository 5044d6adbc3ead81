"""`kubectl ferryman` as users run it: through kubectl's plugin mechanism, against the real
API server and the real operator."""

from __future__ import annotations

import json
import subprocess

import pytest

from e2e import rollouts as r
from ferryman.api.annotations import ACTION_ID
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")


def ferryman(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("ferryman", *args, check=False, timeout=60)


def test_status_promote_history_lineage_and_errors(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0", "1.2.0", "1.3.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy", timeout=60, message="stable"
    )

    refused = ferryman(cluster, "promote", "fraud", "-n", namespace)
    assert refused.returncode == 1
    assert "promote does not apply in phase Healthy" in refused.stderr
    missing = ferryman(cluster, "status", "nope", "-n", namespace)
    assert (
        missing.returncode == 1
        and f"Rollout nope not found in namespace {namespace}" in missing.stderr
    )

    cluster.kubectl(
        "patch",
        "rollout.ferryman.dev",
        "fraud",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"target": {"version": "1.1.0"}}}),
    )
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Paused",
        timeout=60,
        message="paused at 50%",
    )
    status = ferryman(cluster, "status", "fraud", "-n", namespace)
    assert status.returncode == 0, status.stderr
    assert "Candidate: 1.1.0   weight 50%" in status.stdout and "Step:      1/2" in status.stdout

    promoted = ferryman(cluster, "promote", "fraud", "-n", namespace)
    assert promoted.returncode == 0, promoted.stderr
    assert "applied: promote — phase" in promoted.stdout
    wait_for(
        lambda: r.status(cluster, namespace).get("stableVersion") == "1.1.0",
        timeout=60,
        message="promoted",
    )

    history = ferryman(cluster, "history", "fraud", "-n", namespace).stdout
    assert [line.split()[:3] for line in history.splitlines()[1:]] == [
        ["1.0.0", "Promoted", "-"],
        ["1.1.0", "Promoted", "-"],
    ]
    out = ferryman(cluster, "lineage", "fraud", "-n", namespace).stdout
    table, _, served = out.partition("\n\nServing history (from each ModelVersion's status):\n")
    lineage = table.splitlines()
    assert [line.split()[0] for line in lineage[1:]] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    assert "stable" in lineage[2] and "Serving" in lineage[2]
    # Then every interval served: 1.0.0 replaced by 1.1.0, which still serves.
    assert [line.split()[:2] for line in served.splitlines()[1:]] == [
        ["1.0.0", "fraud"],
        ["1.1.0", "fraud"],
    ]
    assert served.splitlines()[1].endswith("replaced by 1.1.0")

    watched = ferryman(cluster, "status", "fraud", "-n", namespace, "--watch", "--timeout", "3")
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.count("Rollout ") >= 1 and "Healthy" in watched.stdout

    help_text = cluster.kubectl("ferryman", "--help").stdout
    assert "annotations with a nonce" in help_text

    undo_of_a_cold_previous_stable_exits_1_with_the_reason(cluster, namespace)
    an_action_overtaken_by_a_new_target_exits_1_with_the_operators_reason(
        cluster, namespace, operator
    )


def undo_of_a_cold_previous_stable_exits_1_with_the_reason(cluster: Cluster, ns: str) -> None:
    """Field case 31: 1.1.0 is stable and 1.0.0 was scaled away (scaleDownDelaySeconds);
    `undo` must not report success. The CLI refuses it with the reason (exit 1), and the
    same undo sent past the CLI is rejected by the operator with the same reason."""
    wait_for(
        lambda: cluster.get_json("deployment", "fraud-1-0-0", ns) is None,
        timeout=30,
        message="1.0.0 scaled away",
    )
    reason = "undo needs the previous stable version 1.0.0 still warm and Ready"
    undo = ferryman(cluster, "undo", "fraud", "-n", ns)
    assert undo.returncode == 1, undo.stdout
    assert reason in undo.stderr and "handled" not in undo.stdout

    action_id = r.act(cluster, ns, "undo")  # past the CLI: a raw annotation
    wait_for(
        lambda: r.status(cluster, ns).get("handledActionId") == action_id,
        timeout=30,
        message="raw undo handled",
    )
    st = r.status(cluster, ns)
    assert "lastAction" in st, "status.lastAction pruned: older CRDs re-applied meanwhile?"
    assert st["lastAction"]["id"] == action_id and st["lastAction"]["result"] == "Rejected"
    assert reason in st["lastAction"]["message"]
    assert st["stableVersion"] == "1.1.0" and r.http_route(cluster, ns) == {"fraud-1-1-0": 100}
    wait_for(
        lambda: (
            reason
            in cluster.kubectl(
                "get", "events", "-n", ns, "--field-selector=reason=ActionRejected"
            ).stdout
        ),
        timeout=20,
        message="ActionRejected event",
    )


def an_action_overtaken_by_a_new_target_exits_1_with_the_operators_reason(
    cluster: Cluster, ns: str, operator: OperatorProcess
) -> None:
    """The CLI's check passes (Paused at a manual step), then GitOps retargets before the
    operator decides: the operator rejects the promote as superseded and the waiting CLI
    exits 1 with that reason. The operator is down in between so the order is certain."""
    r.retarget(cluster, ns, "1.2.0")
    wait_for(
        lambda: r.status(cluster, ns).get("phase") == "Paused",
        timeout=60,
        message="1.2.0 paused at 50%",
    )
    operator.kill()
    sent = (cluster.get_json("rollout.ferryman.dev", "fraud", ns) or {})["metadata"]
    before = (sent.get("annotations") or {}).get(ACTION_ID)
    cli = subprocess.Popen(
        [cluster.kubectl_bin, "ferryman", "promote", "fraud", "-n", ns],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (
                (cluster.get_json("rollout.ferryman.dev", "fraud", ns) or {})["metadata"]
                .get("annotations", {})
                .get(ACTION_ID)
                not in (None, before)
            ),
            timeout=20,
            message="promote sent",
        )
        r.retarget(cluster, ns, "1.3.0")
        operator.start()
        out, err = cli.communicate(timeout=60)
    finally:
        cli.kill()
    assert cli.returncode == 1, out
    assert (
        "the operator rejected promote: promote not applied: candidate 1.2.0 was superseded "
        "by target 1.3.0"
    ) in err
    st = r.status(cluster, ns)
    assert st["candidateVersion"] == "1.3.0" and st["lastAction"]["result"] == "Rejected"
    assert [h["outcome"] for h in st["history"]][-1] == "Superseded"
