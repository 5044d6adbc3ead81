"""Approvals with proven identity against the real API server and operator
(docs/approvals.md): a Rollout whose gate needs 2 approvals of its groups pauses before
any traffic (AwaitingApproval in status, conditions, ``kubectl get`` and ``kubectl
ferryman status``); the admission policy refuses an approval forged in another user's
name or claiming a group the creator is not in, with its message; approvals of another
version or of a group the gate does not name are created but not counted; ``kubectl
ferryman approve`` as a ServiceAccount (identity from SelfSubjectReview) counts once
(a second run is refused as already approved); promote does not pass the gate; the spec
of an approval cannot be edited; an impersonated member of the gate's group brings the
count to 2 and the rollout proceeds to promotion.

Users are impersonated (``kubectl --as alice --as-group ml-approvers``): the API server
puts exactly those in ``request.userInfo``, which is what the policy checks. RBAC set up
here lets them (and the ServiceAccount) create ModelApprovals in the test namespace."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from e2e import rollouts as r
from ferryman.api.approval import IMMUTABLE_MESSAGE
from harness import rbac
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")

USERS = ("alice", "bob", "carol", "mallory")
POLICY_SAYS = "ModelApproval spec.approvedBy must be your own username"


def rbac_objects(ns: str) -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "approvers", "namespace": ns},
        "rules": [
            {
                "apiGroups": ["ferryman.dev"],
                "resources": ["modelapprovals"],
                "verbs": ["create", "get", "list"],
            },
            {"apiGroups": ["ferryman.dev"], "resources": ["rollouts"], "verbs": ["get"]},
        ],
    }
    subjects: list[dict[str, str]] = [
        {"kind": "User", "name": u, "apiGroup": "rbac.authorization.k8s.io"} for u in USERS
    ]
    subjects.append({"kind": "ServiceAccount", "name": "approver", "namespace": ns})
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "approvers", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "approvers"},
        "subjects": subjects,
    }
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "approver"}}
    return [role, binding, sa]


def approval(name: str, by: str, version: str = "1.1.0", *groups: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"rollout": "fraud", "version": version, "approvedBy": by}
    if groups:
        spec["groups"] = list(groups)
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ModelApproval",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_as(
    cluster: Cluster, ns: str, user: str, groups: list[str], obj: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    impersonate = ["--as", user, *(a for g in groups for a in ("--as-group", g))]
    return cluster.kubectl(
        *impersonate, "create", "-n", ns, "-f", "-", input=json.dumps(obj), check=False
    )


def awaiting(st: dict[str, Any]) -> bool:
    return st.get("phase") == "Paused" and (st.get("pause") or {}).get("reason") == (
        "AwaitingApproval"
    )


def test_approvals_by_proven_users_unpause_and_forgeries_are_refused(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns = namespace
    approvers_group = f"system:serviceaccounts:{ns}"
    gate = {"count": 2, "groups": ["ml-approvers", approvers_group], "at": "BeforeTraffic"}
    cluster.apply(rbac_objects(ns), namespace=ns)
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    steps = {"canary": {"steps": [{"setWeight": 50}]}}
    cluster.apply(r.rollout("1.0.0", strategy=steps, gates={"approvals": gate}), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    r.retarget(cluster, ns, "1.1.0")
    st = wait_for(
        lambda: (s := r.status(cluster, ns)) and awaiting(s) and s, timeout=60, message="gate"
    )
    assert st["weights"]["candidate"] == 0 and st["weights"]["mirrorPercent"] == 0
    assert st["approval"]["counted"] == 0 and st["approval"]["required"] == 2
    cond = {c["type"]: c for c in st["conditions"]}["Paused"]
    assert (cond["status"], cond["reason"]) == ("True", "AwaitingApproval")
    wide = cluster.kubectl("get", "rollout.ferryman.dev", "fraud", "-n", ns, "-o", "wide").stdout
    header, row = wide.splitlines()[:2]
    assert row[header.index(" PAUSE ") + 1 :].split()[0] == "AwaitingApproval", wide

    # Forged: mallory writes alice's name; bob claims a group he is not in.
    forged = create_as(
        cluster,
        ns,
        "mallory",
        ["ml-approvers"],
        approval("forged", "alice", "1.1.0", "ml-approvers"),
    )
    assert forged.returncode != 0
    assert POLICY_SAYS in forged.stderr and "you are mallory" in forged.stderr, forged.stderr
    claimed = create_as(cluster, ns, "bob", [], approval("claimed", "bob", "1.1.0", "ml-approvers"))
    assert claimed.returncode != 0 and POLICY_SAYS in claimed.stderr, claimed.stderr
    assert "you are bob in groups [system:authenticated]" in claimed.stderr, claimed.stderr

    # Accepted by the API server, but not counted: another version, a group not in the gate.
    for user, groups, obj in (
        ("bob", ["ml-approvers"], approval("old", "bob", "1.0.0", "ml-approvers")),
        ("carol", ["other-team"], approval("other", "carol", "1.1.0", "other-team")),
    ):
        made = create_as(cluster, ns, user, groups, obj)
        assert made.returncode == 0, made.stderr

    # The first approver: `kubectl ferryman approve` as a ServiceAccount (its identity
    # from SelfSubjectReview); a second run is reported, not duplicated.
    token = cluster.kubectl("create", "token", "approver", "-n", ns).stdout.strip()
    kubeconfig = tmp_path / "approver.kubeconfig"
    rbac.write_kubeconfig(cluster.kubeconfig, kubeconfig, token=token, user="approver")
    sa = f"system:serviceaccount:{ns}:approver"
    cli = ["ferryman", "approve", "fraud", "-n", ns, "--kubeconfig", str(kubeconfig)]
    out = cluster.kubectl(*cli, "--comment", "offline eval reviewed")
    assert f"created: {sa} as {approvers_group} approves 1.1.0 of fraud" in out.stdout, out.stdout
    twice = cluster.kubectl(*cli, check=False)
    assert twice.returncode == 1 and f"{sa} already approved 1.1.0" in twice.stderr, twice.stderr
    # Named from (version, user, the Rollout's creation): plan.approvals.counting_after.
    listed = cluster.kubectl("get", "modelapproval.ferryman.dev", "-n", ns, "-o", "json")
    (kept,) = [a for a in json.loads(listed.stdout)["items"] if a["spec"]["approvedBy"] == sa]
    assert kept["metadata"]["name"].startswith("fraud-")
    assert kept["spec"]["comment"] == "offline eval reviewed"
    assert kept["spec"]["groups"] == [approvers_group]

    st = wait_for(
        lambda: (s := r.status(cluster, ns)).get("approval", {}).get("counted") == 1 and s,
        timeout=30,
        message="the ServiceAccount's approval counted",
    )
    assert st["approval"]["approvedBy"] == [sa] and awaiting(st)
    assert "1/2 approvals" in st["pause"]["message"] and f"(by {sa})" in st["pause"]["message"]
    shown = cluster.kubectl("ferryman", "status", "fraud", "-n", ns).stdout
    assert f"Approvals: 1/2 for 1.1.0, BeforeTraffic by {sa}" in shown, shown
    # promote does not pass an approval gate.
    refused = cluster.kubectl("ferryman", "promote", "fraud", "-n", ns, check=False)
    assert refused.returncode == 1 and "approval" in refused.stderr, refused.stderr

    # An approval's spec cannot be edited (not even by an admin): what was proven stays.
    edit = cluster.kubectl(
        "patch", "modelapproval.ferryman.dev", "other", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"groups": ["ml-approvers"]}}), check=False,
    )  # fmt: skip
    assert edit.returncode != 0 and IMMUTABLE_MESSAGE in edit.stderr, edit.stderr
    st = r.status(cluster, ns)
    assert awaiting(st) and st["approval"]["counted"] == 1, st.get("approval")

    # The second approver, impersonated: the rollout proceeds to promotion.
    made = create_as(
        cluster, ns, "alice", ["ml-approvers"], approval("alice", "alice", "1.1.0", "ml-approvers")
    )
    assert made.returncode == 0, made.stderr
    st = wait_for(
        lambda: (s := r.status(cluster, ns)).get("stableVersion") == "1.1.0" and s,
        timeout=90,
        message="promoted after two approvals",
    )
    assert st["phase"] in ("Healthy", "Baking")
    assert st["approval"]["approvedBy"] == ["alice", sa] and st["approval"]["counted"] == 2


def test_an_approval_gate_before_full_holds_the_last_step_until_approved(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    cluster.apply(rbac_objects(ns), namespace=ns)
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    steps = {"canary": {"steps": [{"setWeight": 50}]}}
    gate = {"approvals": {"count": 1, "at": "BeforeFull"}}  # no groups: anyone may approve
    cluster.apply(r.rollout("1.0.0", strategy=steps, gates=gate), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    r.retarget(cluster, ns, "1.1.0")
    st = wait_for(
        lambda: (s := r.status(cluster, ns)) and awaiting(s) and s, timeout=60, message="gate"
    )
    assert st["weights"]["candidate"] == 50 and st["currentStep"] == 1
    assert "before promotion to 100%: 0/1 approvals for 1.1.0" in st["message"]
    made = create_as(cluster, ns, "carol", ["other-team"], approval("carol", "carol", "1.1.0"))
    assert made.returncode == 0, made.stderr
    st = wait_for(
        lambda: (s := r.status(cluster, ns)).get("stableVersion") == "1.1.0" and s,
        timeout=60,
        message="promoted once approved",
    )
    assert st["approval"]["approvedBy"] == ["carol"]


def test_approvals_of_an_aborted_attempt_do_not_count_when_it_is_retried(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """Approved with `kubectl ferryman approve`, aborted at the step after, retried: the
    retried version waits for approvals again (the earlier one predates the abort, by its
    creationTimestamp), and the same approver's `kubectl ferryman approve` creates a new
    approval rather than answering "already approved"; with it the rollout goes on
    (review9 F1)."""
    ns = namespace
    cluster.apply(rbac_objects(ns), namespace=ns)
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    steps = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
    gate = {"approvals": {"count": 1, "at": "BeforeTraffic"}}
    cluster.apply(r.rollout("1.0.0", strategy=steps, gates=gate), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    r.retarget(cluster, ns, "1.1.0")
    wait_for(lambda: awaiting(r.status(cluster, ns)), timeout=60, message="gate")
    token = cluster.kubectl("create", "token", "approver", "-n", ns).stdout.strip()
    kubeconfig = tmp_path / "approver.kubeconfig"
    rbac.write_kubeconfig(cluster.kubeconfig, kubeconfig, token=token, user="approver")
    cli = ["ferryman", "approve", "fraud", "-n", ns, "--kubeconfig", str(kubeconfig)]
    first = cluster.kubectl(*cli)
    assert "created" in first.stdout, first.stdout
    wait_for(
        lambda: (r.status(cluster, ns).get("pause") or {}).get("reason") == "Step",
        timeout=60,
        message="approved, on to the manual pause step",
    )
    cluster.kubectl("ferryman", "abort", "fraud", "-n", ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Aborted", timeout=60, message="abort")
    cluster.kubectl("ferryman", "retry", "fraud", "-n", ns)
    st = wait_for(
        lambda: (s := r.status(cluster, ns)) and awaiting(s) and s,
        timeout=60,
        message="the retried attempt waits for a new approval",
    )
    assert st["approval"]["counted"] == 0 and st["weights"]["candidate"] == 0, st["approval"]
    again = cluster.kubectl(*cli, check=False)
    assert again.returncode == 0 and "created" in again.stdout, (again.stdout, again.stderr)
    wait_for(
        lambda: (r.status(cluster, ns).get("pause") or {}).get("reason") == "Step",
        timeout=60,
        message="approved anew, on to the manual pause step",
    )


def test_a_deleted_approval_held_by_a_finalizer_no_longer_counts(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """`kubectl delete` of an approval withdraws it even while another controller's
    finalizer (a GitOps tool's, a backup tool's) keeps the object Terminating: it counted
    until the finalizer went (review9 F6)."""
    ns = namespace
    cluster.apply(rbac_objects(ns), namespace=ns)
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    steps = {"canary": {"steps": [{"setWeight": 50}]}}
    gate = {"approvals": {"count": 2, "at": "BeforeTraffic"}}
    cluster.apply(r.rollout("1.0.0", strategy=steps, gates=gate), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    r.retarget(cluster, ns, "1.1.0")
    wait_for(lambda: awaiting(r.status(cluster, ns)), timeout=60, message="gate")
    held = approval("alice", "alice", "1.1.0")
    held["metadata"]["finalizers"] = ["example.com/keep"]
    made = create_as(cluster, ns, "alice", [], held)
    assert made.returncode == 0, made.stderr
    wait_for(
        lambda: r.status(cluster, ns).get("approval", {}).get("counted") == 1,
        timeout=30,
        message="alice's approval counted",
    )
    cluster.kubectl("delete", "modelapproval.ferryman.dev", "alice", "-n", ns, "--wait=false")
    try:
        st = wait_for(
            lambda: (s := r.status(cluster, ns)).get("approval", {}).get("counted") == 0 and s,
            timeout=30,
            message="the deleted approval withdrawn while Terminating",
        )
        assert awaiting(st) and st["weights"]["candidate"] == 0
    finally:
        cluster.kubectl(
            "patch", "modelapproval.ferryman.dev", "alice", "-n", ns, "--type=merge",
            "-p", json.dumps({"metadata": {"finalizers": None}}), check=False,
        )  # fmt: skip


def test_approvals_given_to_a_deleted_rollout_do_not_count_for_its_successor(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    """A Rollout deleted and re-created under the same name is a new thing to approve:
    alice's approval of the first one (by name and version) does not count for the
    second, which waits at the gate with 0 approvals (creationTimestamps; fix9); a new
    approval counts."""
    ns = namespace
    cluster.apply(rbac_objects(ns), namespace=ns)
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    steps = {"canary": {"steps": [{"setWeight": 50}]}}
    gate = {"approvals": {"count": 2, "at": "BeforeTraffic"}}
    cluster.apply(r.rollout("1.0.0", strategy=steps, gates=gate), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="stable")
    r.retarget(cluster, ns, "1.1.0")
    wait_for(lambda: awaiting(r.status(cluster, ns)), timeout=60, message="gate")
    made = create_as(cluster, ns, "alice", [], approval("alice", "alice", "1.1.0"))
    assert made.returncode == 0, made.stderr
    wait_for(
        lambda: r.status(cluster, ns).get("approval", {}).get("counted") == 1,
        timeout=30,
        message="alice's approval counted",
    )
    cluster.kubectl("delete", "rollout.ferryman.dev", "fraud", "-n", ns, "--timeout=60s")
    cluster.apply(r.rollout("1.0.0", strategy=steps, gates=gate), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=90, message="again")
    r.retarget(cluster, ns, "1.1.0")
    st = wait_for(
        lambda: (s := r.status(cluster, ns)) and awaiting(s) and s,
        timeout=60,
        message="the re-created Rollout waits at the gate",
    )
    assert st["approval"]["counted"] == 0 and st["weights"]["candidate"] == 0, st["approval"]
    # Creation times have 1-second resolution and an approval must be strictly newer than
    # the Rollout: this test reaches the gate faster than any person would.
    time.sleep(1.1)
    made = create_as(cluster, ns, "bob", [], approval("bob", "bob", "1.1.0"))
    assert made.returncode == 0, made.stderr
    wait_for(
        lambda: r.status(cluster, ns).get("approval", {}).get("approvedBy") == ["bob"],
        timeout=30,
        message="bob's approval (after the re-creation) counted, alice's not",
    )
