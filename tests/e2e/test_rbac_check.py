"""The RBAC-minimality check can fail: a grant nobody used, injected into the rendered
chart, is reported; the audit-log reading counts only what it should (allowed resource
requests of the identity, since the marker). Runs in the ordinary suite (it needs helm,
not the suite's audit log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from e2e.test_rbac_minimal import ALLOWED_UNUSED, check
from harness import rbac
from harness.kube import Cluster

USER = "system:serviceaccount:ferryman-system:ferryman"


def event(
    verb: str,
    group: str,
    resource: str,
    *,
    decision: str = "allow",
    code: int = 200,
    user: str = USER,
    at: str = "2026-11-30T12:00:00.000001Z",
) -> dict[str, Any]:
    """An audit event (Metadata level) as the API server writes it."""
    name, _, sub = resource.partition("/")
    ref: dict[str, Any] = {"resource": name, "namespace": "ns", "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group
    if sub:
        ref["subresource"] = sub
    return {
        "kind": "Event",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": user},
        "objectRef": ref,
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": at,
        "annotations": {"authorization.k8s.io/decision": decision},
    }


def events_using(triples: set[rbac.Triple]) -> list[dict[str, Any]]:
    """Audit events that use exactly ``triples`` (a create as server-side apply does it:
    a patch answered 201)."""
    out = []
    for verb, group, resource in triples:
        if verb == "create" and resource not in ("events",):
            out.append(event("patch", group, resource, code=201))
        else:
            out.append(event(verb, group, resource, code=201 if verb == "create" else 200))
    return out


def rendered(cluster: Cluster, tmp_path: Path) -> list[dict[str, Any]]:
    return rbac.render(cluster.helm_bin, rbac.suite_values(), workdir=tmp_path)


def test_a_granted_but_unused_rule_injected_into_a_role_is_reported(
    cluster: Cluster, tmp_path: Path
) -> None:
    objects = rendered(cluster, tmp_path)
    everything_used = rbac.used(events_using(rbac.granted(objects) - set(ALLOWED_UNUSED)))
    # As rendered, with every grant used: no problem.
    assert check(rbac.granted(objects), everything_used, ALLOWED_UNUSED) == []
    # Inject a rule nobody uses into the provider-Secret Role.
    role = next(o for o in objects if o["kind"] == "Role")
    role["rules"].append({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["delete"]})
    problems = check(rbac.granted(objects), everything_used, ALLOWED_UNUSED)
    assert problems == ["granted but never used: delete batch/jobs"]
    # A wildcard grant is never "used" either.
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    cluster_role["rules"].append({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})
    assert "granted but never used: * */*" in check(
        rbac.granted(objects), everything_used, ALLOWED_UNUSED
    )


def test_a_stale_allow_list_entry_is_reported(cluster: Cluster, tmp_path: Path) -> None:
    objects = rendered(cluster, tmp_path)
    granted = rbac.granted(objects)
    allowed = {**ALLOWED_UNUSED, ("delete", "", "nodes"): "nowhere"}
    used = rbac.used(events_using(granted))  # the allow-listed grant used after all
    problems = check(granted, used, allowed)
    assert any("('delete', '', 'nodes')" in p and "not granted" in p for p in problems)
    assert any("rollouts/finalizers" in p and "is used" in p for p in problems)


def test_the_audit_log_counts_only_allowed_resource_requests_of_the_identity_since_the_marker(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.log"
    lines = [
        event("get", "apps", "deployments", at="2026-11-30T11:59:59.999999Z"),  # before
        event("list", "", "pods", user="system:serviceaccount:ferryman-system:other"),
        event("get", "", "secrets", decision="forbid", code=403),
        {  # a server-side apply of a new object: the patch allowed, the create refused
            **event("patch", "", "services", code=403),
            "responseStatus": {
                "code": 403,
                "message": 'services "a" is forbidden: User "x" cannot create resource '
                '"services" in API group "" in the namespace "ns"',
            },
        },
        {  # an admission policy's 403 is not a missing permission
            **event("patch", "apps", "deployments", code=403),
            "responseStatus": {"code": 403, "message": "denied by policy p"},
        },
        {**event("get", "", "x"), "objectRef": None, "requestURI": "/apis"},  # discovery
        event("patch", "ferryman.dev", "rollouts/status"),
        event("patch", "apps", "deployments", code=201),  # apply that created
    ]
    log.write_text("\n".join(json.dumps(e) for e in lines) + "\n{partial line")
    since = rbac.parse_since("2026-11-30T12:00:00Z")
    events = list(rbac.read_audit(log, user=USER, since=since))
    assert rbac.used(events) == {
        ("patch", "", "services"),  # allowed by the authorizer, refused afterwards
        ("patch", "ferryman.dev", "rollouts/status"),
        ("patch", "apps", "deployments"),
        ("create", "apps", "deployments"),
    }
    assert rbac.denied(events) == {("get", "", "secrets"), ("create", "", "services")}


def test_pods_are_only_listed_and_watched(cluster: Cluster, tmp_path: Path) -> None:
    """handlers/pods.py watches ferryman's pods for a failing container: the chart grants
    list and watch on pods and nothing else about pods (no get, no status or log read,
    no write), in both scopes."""
    for vals in (
        rbac.suite_values(),
        rbac.values(scope="namespaced", watch_namespaces=["a", "b"]),
    ):
        granted = rbac.granted(rbac.render(cluster.helm_bin, vals, workdir=tmp_path))
        pods = {t for t in granted if t[1] == "" and t[2].split("/")[0] == "pods"}
        assert pods == {("list", "", "pods"), ("watch", "", "pods")}, pods
