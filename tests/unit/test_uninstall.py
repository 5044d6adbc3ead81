"""``kubectl ferryman uninstall`` (``ferryman.cli.uninstall``) over in-memory fakes of the
three Kubernetes APIs it calls: it removes only ferryman's finalizer, re-reads when the
list changed under it, says what it did, is idempotent, and refuses to go on while the
operator it was asked to stop still runs."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ferryman.cli import _parser
from ferryman.cli.uninstall import (
    FINALIZER,
    Uninstall,
    UninstallError,
    finalizer_patch,
    namespaces_of,
)

Obj = dict[str, Any]


def cr(ns: str, name: str, *finalizers: str) -> Obj:
    return {"metadata": {"namespace": ns, "name": name, "finalizers": list(finalizers)}}


class FakeApis:
    """CustomObjectsApi, AppsV1Api and ApiextensionsV1Api as far as the command uses them."""

    def __init__(self, objects: dict[str, list[Obj]], crds: bool = True) -> None:
        self.objects, self.crds_installed = objects, crds
        # What a delete finds (absent: HTTP 404): CRDs, the policy and its binding.
        self.cluster_scoped = (
            {
                "rollouts.ferryman.dev",
                "modelversions.ferryman.dev",
                "modelapprovals.ferryman.dev",
                "vap/modelapprovals.ferryman.dev",
                "vapb/modelapprovals.ferryman.dev",
            }
            if crds
            else set()
        )
        self.calls: list[tuple[str, ...]] = []
        self.conflicts = 0  # the next patches whose test op fails (HTTP 422)
        self.replicas = [0]  # the operator Deployment's status.replicas, read by read
        self.pods = [0]  # its pods, terminating ones included, list by list
        self.pods_forbidden = False  # listing pods: HTTP 403

    def _find(self, ns: str, plural: str, name: str) -> Obj:
        return next(
            o
            for o in self.objects[plural]
            if (o["metadata"]["namespace"], o["metadata"]["name"]) == (ns, name)
        )

    # CustomObjectsApi
    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> Obj:
        if not self.crds_installed:
            raise ApiException(status=404, reason="Not Found")
        return {"items": copy.deepcopy(self.objects[plural])}

    def list_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str) -> Obj:
        found = [o for o in self.objects[plural] if o["metadata"]["namespace"] == ns]
        return {"items": copy.deepcopy(found)}

    def get_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, name: str
    ) -> Obj:
        return copy.deepcopy(self._find(ns, plural, name))

    def patch_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, name: str, patch: Any, **_: Any
    ) -> None:
        held = self._find(ns, plural, name)
        if self.conflicts:
            self.conflicts -= 1
            held["metadata"]["finalizers"].append("someone.else/finalizer")
            raise ApiException(status=422, reason="test failed")
        assert patch[0] == {
            "op": "test",
            "path": "/metadata/finalizers",
            "value": held["metadata"]["finalizers"],
        }
        held["metadata"]["finalizers"] = patch[1]["value"]
        self.calls.append(("patch", plural, name))

    def delete_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, name: str
    ) -> None:
        self.calls.append(("delete", plural, name))

    # ApiextensionsV1Api
    def _delete_cluster_scoped(self, key: str, call: str, name: str) -> None:
        if key not in self.cluster_scoped:
            raise ApiException(status=404, reason="Not Found")
        self.cluster_scoped.discard(key)
        self.calls.append((call, name))

    def delete_custom_resource_definition(self, name: str) -> None:
        self._delete_cluster_scoped(name, "delete-crd", name)

    # AdmissionregistrationV1Api
    def delete_validating_admission_policy(self, name: str) -> None:
        self._delete_cluster_scoped(f"vap/{name}", "delete-policy", name)

    def delete_validating_admission_policy_binding(self, name: str) -> None:
        self._delete_cluster_scoped(f"vapb/{name}", "delete-binding", name)

    # AppsV1Api
    def patch_namespaced_deployment_scale(self, name: str, ns: str, body: Obj) -> None:
        self.calls.append(("scale", ns, name, str(body["spec"]["replicas"])))

    def read_namespaced_deployment(self, name: str, ns: str) -> Any:
        left = self.replicas.pop(0) if len(self.replicas) > 1 else self.replicas[0]
        selector = SimpleNamespace(match_labels={"app": name})
        return SimpleNamespace(
            status=SimpleNamespace(replicas=left), spec=SimpleNamespace(selector=selector)
        )

    # CoreV1Api
    def list_namespaced_pod(self, ns: str, label_selector: str) -> Any:
        self.calls.append(("list-pods", ns, label_selector))
        if self.pods_forbidden:
            raise ApiException(status=403, reason="Forbidden")
        left = self.pods.pop(0) if len(self.pods) > 1 else self.pods[0]
        return SimpleNamespace(items=[object()] * left)


def command(apis: FakeApis) -> tuple[Uninstall, list[str]]:
    lines: list[str] = []
    u = Uninstall(client.ApiClient(), lines.append)
    u.custom = u.apps = u.crds = u.core = u.admission = apis  # type: ignore[assignment]
    return u, lines


def cluster() -> FakeApis:
    return FakeApis(
        {
            "rollouts": [cr("ml", "fraud", "other.io/keep", FINALIZER), cr("ops", "churn")],
            "modelversions": [cr("ml", "fraud-1-0-0", FINALIZER), cr("ops", "churn-2", FINALIZER)],
        }
    )


def test_the_patch_removes_only_ferrymans_finalizer_from_the_list_as_read() -> None:
    assert finalizer_patch(["other.io/keep"]) is None
    assert finalizer_patch(["other.io/keep", FINALIZER]) == [
        {"op": "test", "path": "/metadata/finalizers", "value": ["other.io/keep", FINALIZER]},
        {"op": "replace", "path": "/metadata/finalizers", "value": ["other.io/keep"]},
    ]


def test_one_namespace_then_all_and_each_time_it_says_what_it_did() -> None:
    apis = cluster()
    u, lines = command(apis)
    assert u.run(["ml"]) == 2
    assert lines == [
        f"rollouts.ferryman.dev ml/fraud: finalizer {FINALIZER} removed",
        f"modelversions.ferryman.dev ml/fraud-1-0-0: finalizer {FINALIZER} removed",
    ]
    assert apis.objects["rollouts"][0]["metadata"]["finalizers"] == ["other.io/keep"]
    lines.clear()
    assert u.run(None) == 1
    assert lines == [f"modelversions.ferryman.dev ops/churn-2: finalizer {FINALIZER} removed"]
    lines.clear()
    assert u.run(None) == 0
    assert lines == ["no ferryman finalizer left in every namespace: nothing to do"]


def test_a_list_changed_under_it_is_read_again_and_the_other_finalizer_kept() -> None:
    apis = cluster()
    apis.conflicts = 1
    u, _ = command(apis)
    u.run(["ml"])
    assert apis.objects["rollouts"][0]["metadata"]["finalizers"] == [
        "other.io/keep",
        "someone.else/finalizer",
    ]


def test_delete_resources_and_crds_and_without_crds_nothing_to_do() -> None:
    apis = cluster()
    u, lines = command(apis)
    u.run(None, delete_resources=True, delete_crds=True)
    assert [c for c in apis.calls if c[0] != "patch"] == [
        ("delete", "rollouts", "fraud"),
        ("delete", "rollouts", "churn"),
        ("delete", "modelversions", "fraud-1-0-0"),
        ("delete", "modelversions", "churn-2"),
        ("delete-crd", "rollouts.ferryman.dev"),
        ("delete-crd", "modelversions.ferryman.dev"),
        ("delete-crd", "modelapprovals.ferryman.dev"),
        ("delete-binding", "modelapprovals.ferryman.dev"),
        ("delete-policy", "modelapprovals.ferryman.dev"),
    ]
    assert lines[-3:] == [
        "customresourcedefinition.apiextensions.k8s.io modelapprovals.ferryman.dev: deleted",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io"
        " modelapprovals.ferryman.dev: deleted",
        "validatingadmissionpolicy.admissionregistration.k8s.io modelapprovals.ferryman.dev:"
        " deleted",
    ]
    # A second run finds nothing left to delete.
    again, lines = command(apis)
    assert again.run(None, delete_crds=True) == 0
    # Only the ModelApproval CRD and the policy left (an older uninstall's leftovers):
    # --delete-crds still removes them.
    leftovers = FakeApis({}, crds=False)
    leftovers.cluster_scoped = {"modelapprovals.ferryman.dev", "vap/modelapprovals.ferryman.dev"}
    left, lines = command(leftovers)
    assert left.run(None, delete_crds=True) == 2
    assert leftovers.calls == [
        ("delete-crd", "modelapprovals.ferryman.dev"),
        ("delete-policy", "modelapprovals.ferryman.dev"),
    ]
    gone, lines = command(FakeApis({}, crds=False))
    assert gone.run(None, delete_crds=True) == 0
    assert lines == [
        "no ferryman CRDs (rollouts.ferryman.dev, modelversions.ferryman.dev): nothing to do"
    ]


def test_the_operator_is_stopped_first_or_nothing_is_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ferryman.cli.uninstall.POLL_SECONDS", 0.0)
    apis = cluster()
    apis.replicas = [1, 1, 0]
    u, lines = command(apis)
    u.run(["ml"], stop_operator="ferryman-system/ferryman")
    assert apis.calls[0] == ("scale", "ferryman-system", "ferryman", "0")
    assert lines[0] == "deployment.apps ferryman-system/ferryman: scaled to 0, no replica left"
    stuck = cluster()
    stuck.replicas = [1]
    u, _ = command(stuck)
    with pytest.raises(UninstallError, match="still has 1 replica"):
        u.run(["ml"], stop_operator="ferryman-system/ferryman", timeout=0.0)
    assert [c for c in stuck.calls if c[0] == "patch"] == []


def test_stopping_waits_for_terminating_pods_too_unless_pods_cannot_be_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """status.replicas is 0 while a pod still terminates (and may still write)."""
    monkeypatch.setattr("ferryman.cli.uninstall.POLL_SECONDS", 0.0)
    apis = cluster()
    apis.pods = [1, 1, 0]
    u, lines = command(apis)
    u.run(["ml"], stop_operator="ferryman-system/ferryman")
    listed = [c for c in apis.calls if c[0] == "list-pods"]
    assert listed == [("list-pods", "ferryman-system", "app=ferryman")] * 3
    assert apis.calls.index(listed[-1]) < apis.calls.index(("patch", "rollouts", "fraud"))
    assert lines[0] == "deployment.apps ferryman-system/ferryman: scaled to 0, no replica left"
    stuck = cluster()
    stuck.pods = [1]
    u, _ = command(stuck)
    with pytest.raises(UninstallError, match="still has 1 pod"):
        u.run(["ml"], stop_operator="ferryman-system/ferryman", timeout=0.0)
    assert [c for c in stuck.calls if c[0] == "patch"] == []
    forbidden = cluster()
    forbidden.pods_forbidden = True
    u, lines = command(forbidden)
    u.run(["ml"], stop_operator="ferryman-system/ferryman")
    assert "pods not listable" in lines[0]
    assert ("patch", "rollouts", "fraud") in forbidden.calls


def test_arguments() -> None:
    args = _parser().parse_args(["uninstall", "-A", "--delete-crds", "--stop-operator", "a/b"])
    assert (args.command, args.all_namespaces, args.delete_crds, args.stop_operator) == (
        "uninstall",
        True,
        True,
        "a/b",
    )
    assert not args.delete_resources
    assert namespaces_of(args, "ml") is None
    assert namespaces_of(_parser().parse_args(["uninstall"]), "ml") == ["ml"]
    listed = _parser().parse_args(["uninstall", "--namespaces", "team-a, team-b"])
    assert namespaces_of(listed, "ml") == ["team-a", "team-b"]
