"""``kubectl ferryman uninstall``: let Kubernetes delete ferryman's objects without ferryman.

The operator puts its finalizer (``ferryman.dev/finalizer``) on every Rollout and on the
ModelVersions a Rollout serves; with the operator stopped or uninstalled, nothing would
remove it, and deleting such an object, its namespace or the CRDs would wait forever.
This command removes that finalizer from every Rollout and ModelVersion (in one
namespace, or all with ``-A``), each with a JSON patch that tests the finalizer list it
read first (a concurrent change makes it read again). Optionally it first scales the
operator's Deployment to 0 and waits until no replica is left (``--stop-operator``: a
running operator would add its finalizer again at the next event of the object), and
afterwards deletes the Rollouts and ModelVersions (``--delete-resources``; the garbage
collector then removes what they own, since no finalizer applies ``deletionPolicy``
any more) and the two CRDs (``--delete-crds``, which deletes every object of them too).

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

from ferryman.api.common import GROUP, VERSION
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.rollout import PLURAL

FINALIZER = f"{GROUP}/finalizer"  # as handlers.lifecycle names it for kopf
PLURALS = (PLURAL, MV_PLURAL)
CRDS = tuple(f"{p}.{GROUP}" for p in PLURALS)
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
        "--stop-operator",
        metavar="NAMESPACE/DEPLOYMENT",
        help="scale the operator's Deployment to 0 and wait until its replicas are gone first",
    )
    u.add_argument(
        "--delete-resources",
        action="store_true",
        help="then delete every Rollout and ModelVersion (what they own is garbage-collected)",
    )
    u.add_argument(
        "--delete-crds",
        action="store_true",
        help="then delete the CRDs (and with them every Rollout and ModelVersion)",
    )
    u.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the operator to stop"
    )


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
        self.crds = client.ApiextensionsV1Api(api)
        self.say = say

    def installed(self) -> list[str]:
        """The plurals whose CRD exists."""
        found = []
        for plural, crd in zip(PLURALS, CRDS, strict=True):
            try:
                self.crds.read_custom_resource_definition(crd)
            except ApiException as e:
                if e.status != 404:
                    raise
                continue
            found.append(plural)
        return found

    def stop_operator(self, where: str, timeout: float) -> None:
        """Scale Deployment ``where`` ("namespace/name") to 0 and wait (``timeout``
        seconds) until it reports no replicas. Raises UninstallError when it does not."""
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
                self.say(f"deployment.apps {where}: scaled to 0, no replica left")
                return
            if time.monotonic() >= deadline:
                raise UninstallError(
                    f"deployment.apps {where} still has {left} replica(s) "
                    f"after {timeout:g}s; its finalizers would come back: not removing them"
                )
            time.sleep(POLL_SECONDS)

    def _list(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            found = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        items: list[dict[str, Any]] = found["items"]  # type: ignore[index]
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
        namespace: str | None,
        *,
        stop_operator: str | None = None,
        delete_resources: bool = False,
        delete_crds: bool = False,
        timeout: float = 120.0,
    ) -> int:
        """The whole uninstall (module docstring) in ``namespace`` (None: all); returns
        how many changes it made (0: there was nothing to do)."""
        changes = 0
        if stop_operator:
            self.stop_operator(stop_operator, timeout)
        plurals = self.installed()
        if not plurals:
            self.say(f"no ferryman CRDs ({', '.join(CRDS)}): nothing to do")
            return 0
        for plural in plurals:
            kind = f"{plural}.{GROUP}"
            for obj in self._list(plural, namespace):
                meta = obj["metadata"]
                where = f"{kind} {meta['namespace']}/{meta['name']}"
                if self.release(plural, obj):
                    self.say(f"{where}: finalizer {FINALIZER} removed")
                    changes += 1
                if delete_resources:
                    try:
                        self.custom.delete_namespaced_custom_object(
                            GROUP, VERSION, meta["namespace"], plural, meta["name"]
                        )
                    except ApiException as e:
                        if e.status != 404:
                            raise
                    else:
                        self.say(f"{where}: deleted")
                        changes += 1
        if delete_crds:
            for crd in CRDS:
                try:
                    self.crds.delete_custom_resource_definition(crd)
                except ApiException as e:
                    if e.status != 404:
                        raise
                else:
                    self.say(f"customresourcedefinition.apiextensions.k8s.io {crd}: deleted")
                    changes += 1
        if changes == 0:
            scope = "every namespace" if namespace is None else f"namespace {namespace}"
            self.say(f"no ferryman finalizer left in {scope}: nothing to do")
        return changes
