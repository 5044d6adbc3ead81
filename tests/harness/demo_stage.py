"""The stage both demos play on: ``make demo`` (hack/demo.py, canary) and ``make demo-ab``
(hack/demo_ab.py, A/B test and drifting shadow).

Why it exists: the two demos need the same set-up and teardown (the local control plane,
ferryman's CRDs, a fresh namespace, a real Prometheus, simulated data planes it scrapes,
the operator as a process running as the chart's ServiceAccount with the chart's RBAC)
and the same narration (a clock since the start and a timeline); one copy keeps them
from drifting apart, and living in the harness it runs on the machinery the e2e tests
use and is type-checked with them.

``Stage`` is a context manager: entering brings everything up (starting the control plane
only if it is not already running), leaving stops what it started (operator, data planes,
Prometheus), deletes the namespace and takes the control plane down again if it started
it. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import localcluster

from ferryman.api.rollout import Rollout
from ferryman.cli import render
from harness import rbac
from harness.dataplane import DataPlane
from harness.kube import Cluster, check_test_context, wait_for
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
ROLLOUT = "rollout.ferryman.dev"


@dataclass
class Narrator:
    """Prints ``[t+  12.3s] message`` lines (seconds since it was made) and keeps the
    marked ones for the closing timeline."""

    t0: float = field(default_factory=time.monotonic)
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, msg: str, *, mark: bool = True) -> None:
        stamp = self.elapsed()
        print(f"[t+{stamp:5.1f}s] {msg}", flush=True)
        if mark:
            self.timeline.append((stamp, msg))

    def print_timeline(self) -> None:
        print("Timeline")
        for at, msg in self.timeline:
            print(f"  t+{at:5.1f}s  {msg}")


def model_version(
    model: str, version: str, metrics: dict[str, float], *, kind: str = "onnx"
) -> dict[str, Any]:
    """A ModelVersion ``<model>-<version with dashes>`` with an artifact digest derived
    from the version and a fictional serving image (the local control plane's kwok makes
    its pods Ready)."""
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{model}-{version.replace('.', '-')}"},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {
                "uri": f"s3://models/{model}/{version}/model.{kind}",
                "digest": "sha256:" + hashlib.sha256(f"{model}{version}".encode()).hexdigest(),
            },
            "serving": {"image": "ghcr.io/acme/onnx-server:2.4.1", "port": 8080},
            "lineage": {"dataVersion": "transactions-2026-10", "codeCommit": "a1b2c3d"},
            "metrics": metrics,
        },
    }


class Stage:
    """Control plane, CRDs, namespace ``namespace``, Prometheus and the operator (see the
    module docstring). ``release`` names the chart release whose ServiceAccount and RBAC
    the operator runs as (its own, so a demo run inside the test suite leaves the suite's
    identity alone)."""

    def __init__(self, narrator: Narrator, namespace: str, *, release: str = rbac.RELEASE):
        self.narrator = narrator
        self.namespace = namespace
        self.release = release
        self.layout = localcluster.Layout()
        self.was_up = False
        self.work = Path(tempfile.mkdtemp(prefix=f"{namespace}-"))
        self.prometheus = PrometheusServer(self.work / "prometheus")
        self.operator: OperatorProcess | None = None
        self.dataplanes: list[DataPlane] = []
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        assert self._cluster is not None, "the stage is not up"
        return self._cluster

    def __enter__(self) -> Stage:
        try:
            self._up()
        except BaseException:
            self._down(ok=False)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._down(ok=exc_type is None)

    def _up(self) -> None:
        say = self.narrator.say
        self.was_up = localcluster.is_up(self.layout)
        say(
            "starting the local control plane (etcd, kube-apiserver, controller-manager, "
            "scheduler, kwok)"
        )
        localcluster.up(self.layout)
        bins = localcluster.Binaries.from_cache()
        self._cluster = cluster = Cluster(
            kubeconfig=self.layout.kubeconfig,
            local=True,
            kubectl_bin=str(bins.kubectl),
            helm_bin=str(bins.helm),
            context=check_test_context(self.layout.kubeconfig),
        )
        cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=ferryman-crds",
            "-f",
            str(ROOT / "crds"),
        )
        cluster.wait_established("rollouts.ferryman.dev", "modelversions.ferryman.dev")
        # A namespace left by an interrupted run goes first (its objects would be adopted).
        if cluster.get_json("namespace", self.namespace) is not None:
            cluster.delete_namespace(self.namespace)
            wait_for(
                lambda: cluster.get_json("namespace", self.namespace) is None,
                timeout=60,
                interval=0.5,
                message=f"namespace {self.namespace} left by an earlier run deleted",
            )
        cluster.create_namespace_named(self.namespace)
        settings = self.work / "settings.yaml"
        settings.write_text(
            json.dumps(
                {
                    "providers": {"default": {"address": self.prometheus.url}},
                    "namespace": rbac.OPERATOR_NAMESPACE,
                    "storageInitializerImage": "",
                }
            )
        )
        # The operator runs as the chart's ServiceAccount with the chart's RBAC (rendered
        # by helm, a token from the TokenRequest API), as it would in a cluster: the demo
        # shows that those rules are enough, not what an admin could do.
        identity = rbac.provision(
            cluster,
            rbac.render(
                cluster.helm_bin, rbac.values(), release=self.release, workdir=self.work / "id"
            ),
            kubeconfig=self.work / "id" / "kubeconfig",
        )
        # The operator starts while Prometheus does (its first query comes with the first
        # analysis, well after both are up).
        self.operator = OperatorProcess(
            cluster,
            namespaces=[self.namespace],
            log_dir=self.work / "operator",
            args=[f"--settings={settings}"],
            kubeconfig=identity.kubeconfig,
        ).start(wait=False)
        self.prometheus.start()
        say(f"Prometheus on {self.prometheus.url} (scraping every second)")
        self.operator.wait_live()
        say(f"operator running (python -m ferryman, as {identity.username})")

    def dataplane(self, *, rollout: str, model: str, **kwargs: Any) -> DataPlane:
        """A started simulated data plane for ``rollout`` (``harness.dataplane``), scraped
        by the stage's Prometheus until ``drop`` or the teardown."""
        dp = DataPlane(self.cluster, self.namespace, rollout=rollout, model=model, **kwargs)
        dp.start()
        self.dataplanes.append(dp)
        self.prometheus.add_target(f"dp-{rollout}", dp.address)
        return dp

    def drop(self, dp: DataPlane) -> None:
        """Stop a data plane and its scraping (its Rollout's part of the story is over)."""
        self.prometheus.remove_target(f"dp-{dp.rollout}")
        dp.stop()
        self.dataplanes.remove(dp)

    def retarget(self, rollout: str, version: str) -> None:
        """What GitOps does: change ``spec.target.version``."""
        self.cluster.kubectl(
            "patch",
            ROLLOUT,
            rollout,
            "-n",
            self.namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"target": {"version": version}}}),
        )

    def get(self, rollout: str) -> dict[str, Any]:
        """The Rollout object as the API server has it (``{}`` while it does not exist)."""
        obj = self.cluster.get_json(ROLLOUT, rollout, self.namespace)
        return obj or {}

    def ferryman_status(self, rollout: str) -> str:
        """What ``kubectl ferryman status <rollout>`` prints (its renderer, in process)."""
        return render.status(Rollout.model_validate(self.get(rollout)))

    def _down(self, *, ok: bool) -> None:
        print("\ntearing down", flush=True)
        if self.operator is not None:
            if not ok:
                print(f"--- operator log tail ({self.operator.log_path}) ---")
                print(self.operator.log_tail())
            self.operator.stop()
        for dp in self.dataplanes:
            dp.stop()
        self.prometheus.stop()
        if self._cluster is not None:
            # With the operator gone, its finalizers are taken off first (else the
            # namespace would stay Terminating and the next run would wait on it).
            with contextlib.suppress(Exception):
                self._cluster.delete_namespace(self.namespace)
        if not self.was_up:
            localcluster.down(self.layout)
        else:
            print("(the local control plane was running before the demo; left running)")
        if ok:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print(f"(logs kept in {self.work})")
