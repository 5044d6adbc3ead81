"""The cluster a test session runs against, and small helpers to act on it.

By default that is the local control plane (``hack/cluster/localcluster.py``), started
once per session, or reused if a developer already ran ``make up``. With
``FERRYMAN_TEST_KUBECONFIG`` set, the same tests run against that cluster instead (kind,
k3d, a real one), after a guard checks that its context looks like a test cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import localcluster
import yaml
from kubernetes import client, config

T = TypeVar("T")

TEST_CONTEXT_PREFIXES = ("kind-", "k3d-", "minikube", "ferryman-")
ALLOW_CONTEXT_ENV = "FERRYMAN_TEST_ALLOW_CONTEXT"


class NotATestCluster(Exception):
    """Raised before any test touches a cluster that does not look like a test one."""


def check_test_context(kubeconfig: Path, allow: str | None = None) -> str:
    """Return the kubeconfig's current context if it is a test cluster.

    A context counts as a test cluster when its name starts with one of
    ``TEST_CONTEXT_PREFIXES`` (kind, k3d, minikube, ours) or equals ``allow`` (the
    value of FERRYMAN_TEST_ALLOW_CONTEXT): tests create and delete namespaces and
    cluster-scoped CRDs, so a production context must never be used by accident.
    """
    data = yaml.safe_load(kubeconfig.read_text()) or {}
    context = data.get("current-context") or ""
    if not context:
        raise NotATestCluster(f"{kubeconfig} has no current-context")
    if context.startswith(TEST_CONTEXT_PREFIXES) or (allow and context == allow):
        return context
    raise NotATestCluster(
        f"refusing to run tests against kube-context {context!r} from {kubeconfig}: it does "
        f"not look like a test cluster (names starting with {', '.join(TEST_CONTEXT_PREFIXES)}). "
        f"Set {ALLOW_CONTEXT_ENV}={context} to allow it explicitly."
    )


def wait_for(
    predicate: Callable[[], T | bool | None],
    *,
    timeout: float,
    interval: float = 0.1,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message}; last: {last!r}"
            )
        time.sleep(interval)


@dataclass
class Cluster:
    kubeconfig: Path
    local: bool
    kubectl_bin: str
    helm_bin: str
    context: str
    _api: client.ApiClient | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, helm, the operator)."""
        path = os.pathsep.join(
            [
                str(Path(self.kubectl_bin).parent),
                str(Path(self.helm_bin).parent),
                # the virtualenv's bin: kubectl-ferryman, found by kubectl as a plugin
                str(Path(sys.executable).parent),
                os.environ.get("PATH", ""),
            ]
        )
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            cfg = client.Configuration()
            config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
            self._api = client.ApiClient(cfg)
        return self._api

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def run(
        self,
        binary: str,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [binary, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{Path(binary).name} {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl_bin, *args, input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm_bin, *args, check=check, timeout=timeout)

    def apply(
        self,
        manifest: dict[str, Any] | list[dict[str, Any]] | str,
        *,
        namespace: str | None = None,
        check: bool = True,
        server_side: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """kubectl apply of a manifest given as YAML text or as object(s). Objects go as
        JSON documents (one per object, ``---`` between them): a YAML 1.1 dump leaves
        strings such as "3e-5" unquoted, and kubectl, reading YAML 1.2, would send a
        number. Not a v1 List: kubectl validates a List's items on the client, so the
        API server's own messages (which tests check) would never be seen."""
        if not isinstance(manifest, str):
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = "\n---\n".join(json.dumps(d) for d in docs)
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        if server_side:
            args.append("--server-side")
        return self.kubectl(*args, input=manifest, check=check)

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until every CRD of ``crds`` (names, with or without ``crd/``) has the
        condition Established=True. Polled with ``kubectl get`` rather than ``kubectl
        wait``: on a CRD created a moment before, ``kubectl wait --for=condition=...``
        can fail at once with "status.conditions accessor error: <nil>" (the object has
        no conditions yet), where this waits."""
        names = [c.removeprefix("crd/") for c in crds]

        def established() -> bool:
            proc = self.kubectl("get", "crd", *names, "-o", "json", check=False)
            if proc.returncode != 0:
                return False
            found = json.loads(proc.stdout)
            # One name answers the object itself, several a List.
            items = found.get("items", []) if found.get("kind") == "List" else [found]
            return len(items) == len(names) and all(
                any(
                    c.get("type") == "Established" and c.get("status") == "True"
                    for c in (i.get("status") or {}).get("conditions") or []
                )
                for i in items
            )

        wait_for(established, timeout=timeout, interval=0.2, message=f"{names} Established")

    def get_json(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def create_namespace(self, prefix: str) -> str:
        """A fresh namespace named ``prefix-<random>``."""
        return self.create_namespace_named(f"{prefix[:40].rstrip('-')}-{uuid.uuid4().hex[:6]}")

    def create_namespace_named(self, name: str) -> str:
        self.core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(name=name, labels={"ferryman.dev/test": "true"})
            )
        )
        # Pods can be created only once the namespace's default ServiceAccount exists.
        wait_for(lambda: self._has_default_sa(name), timeout=30, message=f"default SA in {name}")
        return name

    def _has_default_sa(self, namespace: str) -> bool:
        try:
            self.core.read_namespaced_service_account("default", namespace)
            return True
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise

    def delete_namespace(self, name: str) -> None:
        """Delete namespace ``name`` (gone already: fine). A test's operator is stopped
        before its namespace goes, so the finalizers it put on Rollouts and ModelVersions
        are taken off first; otherwise every such namespace stays Terminating for the rest
        of the run (and the API server keeps serving its objects to every watch)."""
        self._release_finalizers(name)
        try:
            self.core.delete_namespace(name)
        except client.ApiException as e:
            if e.status != 404:
                raise

    def _release_finalizers(self, namespace: str) -> None:
        for plural in ("rollouts", "modelversions"):
            try:
                found: Any = self.custom.list_namespaced_custom_object(
                    "ferryman.dev", "v1alpha1", namespace, plural
                )
            except client.ApiException as e:
                if e.status == 404:  # no such CRD (or namespace) here
                    continue
                raise
            for obj in found.get("items", []):
                if not obj["metadata"].get("finalizers"):
                    continue
                try:
                    self.custom.patch_namespaced_custom_object(
                        "ferryman.dev",
                        "v1alpha1",
                        namespace,
                        plural,
                        obj["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )
                except client.ApiException as e:
                    if e.status != 404:
                        raise


def _binary(cached: Path, name: str) -> str:
    if os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found (run `make cluster-build`)")
    return found


def open_cluster() -> tuple[Cluster, bool]:
    """The session's cluster, and whether this session started it (and must stop it)."""
    bins = localcluster.Binaries.from_cache()
    given = os.environ.get("FERRYMAN_TEST_KUBECONFIG")
    if given:
        kubeconfig = Path(given).expanduser().resolve()
        context = check_test_context(kubeconfig, os.environ.get(ALLOW_CONTEXT_ENV))
        return Cluster(
            kubeconfig=kubeconfig,
            local=False,
            context=context,
            kubectl_bin=_binary(bins.kubectl, "kubectl"),
            helm_bin=_binary(bins.helm, "helm"),
        ), False
    layout = localcluster.Layout()
    started = not localcluster.is_up(layout)
    localcluster.up(layout, bins)
    context = check_test_context(layout.kubeconfig)
    return Cluster(
        kubeconfig=layout.kubeconfig,
        local=True,
        context=context,
        kubectl_bin=str(bins.kubectl),
        helm_bin=str(bins.helm),
    ), started
