"""``kubectl ferryman uninstall``: let Kubernetes delete ferryman's objects without ferryman.

The operator puts its finalizer (``ferryman.dev/finalizer``) on every Rollout and on the
ModelVersions a Rollout serves; with the operator stopped or uninstalled, nothing would
remove it, and deleting such an object, its namespace or the CRDs would wait forever.
This command removes that finalizer from every Rollout and ModelVersion (in one
namespace, or all with ``-A``), each with a JSON patch that tests the finalizer list it
read first (a concurrent change makes it read again). Optionally it first scales the
operator's Deployment to 0 and waits until no replica and no pod of it, terminating ones
included, is left (``--stop-operator``: a running operator would add its finalizer again
at the next event of the object), and afterwards deletes the Rollouts and ModelVersions
(``--delete-resources``; the garbage collector then removes what they own, since no
finalizer applies ``deletionPolicy`` any more) and ferryman's three CRDs with the
ModelApproval admission policy and its binding (``--delete-crds``, which deletes every
Rollout, ModelVersion and ModelApproval too).

Idempotent: a second run finds nothing to do and says so. Every change is printed, one
line each, as ``<kind>.ferryman.dev <namespace>/<name>: <what>``. The chart runs it as a
pre-delete hook (charts/ferryman/templates/uninstall-hook.yaml).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ferryman.api.approval import PLURAL as APPROVAL_PLURAL
from ferryman.api.approval import POLICY_NAME
from ferryman.api.common import GROUP, VERSION
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.rollout import PLURAL

FINALIZER = f"{GROUP}/finalizer"  # as handlers.lifecycle names it for kopf
PLURALS = (PLURAL, MV_PLURAL)  # the kinds that carry ferryman's finalizer
CRDS = tuple(f"{p}.{GROUP}" for p in PLURALS)
# What --delete-crds deletes: every CRD, then the ModelApproval policy's binding and the
# policy (crds/policies/; an approval policy without its CRD would be left dangling).
ALL_CRDS = (*CRDS, f"{APPROVAL_PLURAL}.{GROUP}")
JSON_PATCH = "application/json-patch+json"
ATTEMPTS = 5  # reads of one object while its finalizers keep changing
POLL_SECONDS = 0.5


class UninstallError(Exception):
    """What the uninstall could not do (printed, exit code 1)."""


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``uninstall`` on the plugin's subcommand parsers ``sub``."""
    u = sub.add_parser(
        "uninstall",
        parents=parents,
        help="remove ferryman's finalizers (so deletions never hang without the operator)",
        description=(__doc__ or "").split("\n\n")[1],
    )
    u.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (default: -n's)"
    )
    u.add_argument(
        "--namespaces",
        metavar="NS[,NS...]",
        help="these namespaces (comma-separated; the chart's watchNamespaces)",
    )
    u.add_argument(
        "--stop-operator",
        metavar="NAMESPACE/DEPLOYMENT",
        help="scale the operator's Deployment to 0 and wait until its pods are gone first",
    )
    u.add_argument(
        "--delete-resources",
        action="store_true",
        help="then delete every Rollout and ModelVersion (what they own is garbage-collected)",
    )
    u.add_argument(
        "--delete-crds",
        action="store_true",
        help=(
            "then delete the three CRDs (and every Rollout, ModelVersion, ModelApproval) and"
            " the ModelApproval admission policy"
        ),
    )
    u.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the operator to stop"
    )


def namespaces_of(args: argparse.Namespace, current: str) -> list[str] | None:
    """The namespaces the parsed ``args`` name: None (all) with ``-A``, the
    ``--namespaces`` list, else ``current`` (``-n``, or the context's)."""
    if args.all_namespaces:
        return None
    if args.namespaces:
        return [ns.strip() for ns in args.namespaces.split(",") if ns.strip()]
    return [current]


def finalizer_patch(finalizers: list[str]) -> list[dict[str, Any]] | None:
    """The JSON patch (RFC 6902) that removes ``FINALIZER`` from an object whose
    ``metadata.finalizers`` is ``finalizers``: a test of the whole list as read, then the
    list without it. None when it holds no ``FINALIZER``."""
    if FINALIZER not in finalizers:
        return None
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
        {
            "op": "replace",
            "path": "/metadata/finalizers",
            "value": [f for f in finalizers if f != FINALIZER],
        },
    ]


class Uninstall:
    """One run; ``say`` prints each line of what it did."""

    def __init__(self, api: client.ApiClient, say: Callable[[str], None]) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.crds = client.ApiextensionsV1Api(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.say = say

    def stop_operator(self, where: str, timeout: float) -> None:
        """Scale Deployment ``where`` ("namespace/name") to 0 and wait (``timeout``
        seconds) until it reports no replicas and no pod of its selector (its matchLabels)
        is left, terminating ones included (when pods may not be listed, HTTP 403: the
        replicas only, said so). Raises UninstallError when it does not."""
        namespace, _, name = where.partition("/")
        if not namespace or not name:
            raise UninstallError(f"--stop-operator needs NAMESPACE/DEPLOYMENT, not {where!r}")
        try:
            self.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": 0}})
        except ApiException as e:
            if e.status == 404:
                self.say(f"deployment.apps {where}: not found (operator already gone)")
                return
            raise
        deadline = time.monotonic() + timeout
        while True:
            dep = self.apps.read_namespaced_deployment(name, namespace)
            left = dep.status.replicas if dep.status is not None else 0
            if not left:
                break
            self._not_past(deadline, f"deployment.apps {where} still has {left} replica(s)")
            time.sleep(POLL_SECONDS)
        # status.replicas omits terminating pods, which may still write until they exit.
        labels = (dep.spec.selector.match_labels or {}) if dep.spec is not None else {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        while selector:
            try:
                pods = self.core.list_namespaced_pod(namespace, label_selector=selector)
            except ApiException as e:
                if e.status != 403:
                    raise
                self.say(
                    f"deployment.apps {where}: scaled to 0, no replica left (pods not listable: "
                    "a terminating pod may still run until its grace period ends)"
                )
                return
            if not pods.items:
                break
            self._not_past(deadline, f"deployment.apps {where} still has {len(pods.items)} pod(s)")
            time.sleep(POLL_SECONDS)
        self.say(f"deployment.apps {where}: scaled to 0, no replica left")

    def _not_past(self, deadline: float, what: str) -> None:
        if time.monotonic() >= deadline:
            raise UninstallError(
                f"{what} after the timeout; its finalizers would come back: not removing them"
            )

    def _list(self, plural: str, namespaces: list[str] | None) -> list[dict[str, Any]] | None:
        """The objects of ``plural`` in ``namespaces`` (None: all); None when its CRD is
        not installed (HTTP 404: nothing of it can hold a finalizer)."""
        items: list[dict[str, Any]] = []
        try:
            if namespaces is None:
                found: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
                items.extend(found["items"])
            for ns in namespaces or []:
                found = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural)
                items.extend(found["items"])
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return items

    def release(self, plural: str, obj: dict[str, Any]) -> bool:
        """Remove ``FINALIZER`` from ``obj`` (read again after a failed test, up to
        ``ATTEMPTS`` times); whether it was removed here."""
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        for _ in range(ATTEMPTS):
            patch = finalizer_patch(list(meta.get("finalizers") or []))
            if patch is None:
                return False
            try:
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, ns, plural, name, patch, _content_type=JSON_PATCH
                )
                return True
            except ApiException as e:
                if e.status == 404:
                    return False
                if e.status not in (409, 422):  # 422: the test op failed
                    raise
            try:
                fresh: Any = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, ns, plural, name
                )
                meta = fresh["metadata"]
            except ApiException as e:
                if e.status == 404:
                    return False
                raise
        raise UninstallError(f"{plural}.{GROUP} {ns}/{name}: finalizers kept changing")

    def run(
        self,
        namespaces: list[str] | None,
        *,
        stop_operator: str | None = None,
        delete_resources: bool = False,
        delete_crds: bool = False,
        timeout: float = 120.0,
    ) -> int:
        """The whole uninstall (module docstring) in ``namespaces`` (None: all); returns
        how many changes it made (0: there was nothing to do)."""
        changes = 0
        if stop_operator:
            self.stop_operator(stop_operator, timeout)
        installed = 0
        for plural in PLURALS:
            kind = f"{plural}.{GROUP}"
            found = self._list(plural, namespaces)
            if found is None:
                continue
            installed += 1
            for obj in found:
                meta = obj["metadata"]
                where = f"{kind} {meta['namespace']}/{meta['name']}"
                if self.release(plural, obj):
                    self.say(f"{where}: finalizer {FINALIZER} removed")
                    changes += 1
                if delete_resources and self._delete(
                    self.custom.delete_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    meta["namespace"],
                    plural,
                    meta["name"],
                ):
                    self.say(f"{where}: deleted")
                    changes += 1
        removed = self.delete_crds() if delete_crds else 0
        if not installed and not removed:
            self.say(f"no ferryman CRDs ({', '.join(CRDS)}): nothing to do")
            return 0
        changes += removed
        if changes == 0:
            scope = (
                "every namespace" if namespaces is None else "namespace " + ", ".join(namespaces)
            )
            self.say(f"no ferryman finalizer left in {scope}: nothing to do")
        return changes

    def delete_crds(self) -> int:
        """Delete ``ALL_CRDS``, then the ModelApproval ValidatingAdmissionPolicyBinding
        and ValidatingAdmissionPolicy (``POLICY_NAME``); how many were there to delete
        (each one printed)."""
        deleted = 0
        for crd in ALL_CRDS:
            if self._delete(self.crds.delete_custom_resource_definition, crd):
                self.say(f"customresourcedefinition.apiextensions.k8s.io {crd}: deleted")
                deleted += 1
        for kind, call in (
            (
                "validatingadmissionpolicybinding",
                self.admission.delete_validating_admission_policy_binding,
            ),
            ("validatingadmissionpolicy", self.admission.delete_validating_admission_policy),
        ):
            if self._delete(call, POLICY_NAME):
                self.say(f"{kind}.admissionregistration.k8s.io {POLICY_NAME}: deleted")
                deleted += 1
        return deleted

    @staticmethod
    def _delete(call: Callable[..., Any], *args: str) -> bool:
        """``call(*args)``, a delete; whether it deleted (False: already gone, HTTP 404)."""
        try:
            call(*args)
        except ApiException as e:
            if e.status != 404:
                raise
            return False
        return True
