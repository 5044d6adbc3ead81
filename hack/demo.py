#!/usr/bin/env python3
"""``make demo``: the README's main command, ferryman's story end to end.

1. Starts the local control plane (building its binaries on the first run), a real
   Prometheus, the simulated data plane (it turns route weights into request metrics)
   and the operator (``python -m ferryman``), all on 127.0.0.1.
2. Registers three versions of a fraud-detection model and serves 1.2.0.
3. Canary of 1.3.0: at 50% its error rate jumps to 25%; ferryman sees it in Prometheus
   and returns all traffic to 1.2.0 by itself.
4. Canary of 1.3.1, a good version: promoted through every step.
5. Prints a timeline and tears everything down (a cluster that was already running is
   left running).

It reuses the test harness (tests/harness) for Prometheus, the data plane and the
operator process, so the demo and the e2e tests exercise the same machinery.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "hack" / "cluster"), str(ROOT / "tests")]

import localcluster  # noqa: E402

from harness import rbac  # noqa: E402
from harness.dataplane import DataPlane  # noqa: E402
from harness.kube import Cluster, check_test_context  # noqa: E402
from harness.operator import OperatorProcess  # noqa: E402
from harness.prometheus import PrometheusServer  # noqa: E402

NS, MODEL = "ferryman-demo", "fraud-detector"
T0 = time.monotonic()
TIMELINE: list[tuple[float, str]] = []

SEL = 'namespace="{{namespace}}",version="{{version}}"'
ERRORS = (
    f'(sum(rate(model_requests_total{{{SEL},code="500"}}[3s])) or vector(0)) '
    f"/ sum(rate(model_requests_total{{{SEL}}}[3s]))"
)


def say(msg: str, *, mark: bool = True) -> None:
    stamp = time.monotonic() - T0
    print(f"[t+{stamp:5.1f}s] {msg}", flush=True)
    if mark:
        TIMELINE.append((stamp, msg))


def model_version(version: str, auc: float) -> dict[str, Any]:
    import hashlib

    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{MODEL}-{version.replace('.', '-')}"},
        "spec": {
            "model": MODEL,
            "version": version,
            "artifact": {
                "uri": f"s3://models/fraud/{version}/model.onnx",
                "digest": "sha256:" + hashlib.sha256(version.encode()).hexdigest(),
            },
            "serving": {"image": "ghcr.io/acme/onnx-server:2.4.1", "port": 8080},
            "lineage": {"dataVersion": "transactions-2026-10", "codeCommit": "a1b2c3d"},
            "metrics": {"auc": auc},
        },
    }


ROLLOUT: dict[str, Any] = {
    "apiVersion": "ferryman.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": MODEL},
    "spec": {
        "model": MODEL,
        "target": {"version": "1.2.0"},
        "replicas": 4,
        "trafficRouting": {
            "gatewayAPI": {
                "parentRefs": [{"name": "ml-gateway"}],
                "hostnames": ["fraud.acme.example"],
            }
        },
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": "4s"}},
                    {"setWeight": 50},
                    {"pause": {"duration": "10s"}},
                ]
            }
        },
        "gates": {"offlineMetrics": [{"name": "auc", "min": 0.9, "maxDropVsStable": 0.01}]},
        "analysis": {
            "provider": "default",
            "interval": "2s",
            "failureLimit": 1,
            "inconclusiveLimit": 5,
            "consecutiveErrorLimit": 5,
            "metrics": [{"name": "error-rate", "query": ERRORS, "max": 0.05}],
        },
        "scaleDownDelaySeconds": 5,
        "progressDeadlineSeconds": 60,
    },
}


def watch_rollout(
    cluster: Cluster,
    until: str,
    dataplane: DataPlane | None = None,
    go_bad_at: int | None = None,
    limit_s: float = 120,
) -> dict[str, Any]:
    """Print each change of phase/weights/step until the phase is ``until``."""
    last = None
    deadline = time.monotonic() + limit_s
    broke = False
    while time.monotonic() < deadline:
        obj = cluster.get_json("rollout.ferryman.dev", MODEL, NS) or {}
        st = obj.get("status") or {}
        w = st.get("weights") or {}
        view = (st.get("phase"), w.get("stable"), w.get("candidate"), st.get("currentStep"))
        if view != last:
            last = view
            say(
                f"{st.get('phase', '-'):<11} stable {st.get('stableVersion', '-')} "
                f"{w.get('stable', 100):>3}% | candidate {st.get('candidateVersion') or '-'} "
                f"{w.get('candidate', 0):>3}% | step {st.get('currentStep', '-')} | "
                f"{st.get('message', '')}",
                mark=False,
            )
        if go_bad_at is not None and not broke and w.get("candidate") == go_bad_at and dataplane:
            dataplane.set(st["candidateVersion"], error_rate=0.25)
            broke = True
            say(
                f"!! {st['candidateVersion']} starts failing 25% of its requests at "
                f"{go_bad_at}% traffic"
            )
        if st.get("phase") == until and st.get("candidateVersion") is None:
            return st
        time.sleep(0.2)
    raise SystemExit(f"demo: Rollout did not reach {until} in {limit_s}s")


def main() -> int:
    layout = localcluster.Layout()
    was_up = localcluster.is_up(layout)
    say(
        "starting the local control plane (etcd, kube-apiserver, controller-manager, "
        "scheduler, kwok)"
    )
    localcluster.up(layout)
    bins = localcluster.Binaries.from_cache()
    cluster = Cluster(
        kubeconfig=layout.kubeconfig,
        local=True,
        kubectl_bin=str(bins.kubectl),
        helm_bin=str(bins.helm),
        context=check_test_context(layout.kubeconfig),
    )
    work = Path(tempfile.mkdtemp(prefix="ferryman-demo-"))
    prometheus = PrometheusServer(work / "prometheus")
    operator: OperatorProcess | None = None
    dataplane: DataPlane | None = None
    try:
        cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=ferryman-crds",
            "-f",
            str(ROOT / "crds"),
        )
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/rollouts.ferryman.dev",
            "crd/modelversions.ferryman.dev",
        )
        subprocess.run(
            [
                cluster.kubectl_bin,
                f"--kubeconfig={layout.kubeconfig}",
                "delete",
                "namespace",
                NS,
                "--wait=true",
                "--ignore-not-found",
            ],
            check=True,
            capture_output=True,
        )
        cluster.create_namespace_named(NS)
        prometheus.start()
        say(f"Prometheus on {prometheus.url} (scraping every second)")
        dataplane = DataPlane(cluster, NS, rollout=MODEL, model=MODEL).start()
        prometheus.add_target("dataplane", dataplane.address)
        say(f"simulated data plane on {dataplane.address}: 200 requests/s split by the route")
        settings = work / "settings.yaml"
        settings.write_text(
            json.dumps(
                {
                    "providers": {"default": {"address": prometheus.url}},
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
            rbac.render(cluster.helm_bin, rbac.values(), workdir=work / "identity"),
            kubeconfig=work / "identity" / "kubeconfig",
        )
        operator = OperatorProcess(
            cluster,
            namespaces=[NS],
            log_dir=work / "operator",
            args=[f"--settings={settings}"],
            kubeconfig=identity.kubeconfig,
        ).start()
        say(f"operator running (python -m ferryman, as {identity.username})")

        cluster.apply(
            [
                model_version("1.2.0", 0.936),
                model_version("1.3.0", 0.941),
                model_version("1.3.1", 0.943),
            ],
            namespace=NS,
        )
        say("registered ModelVersions 1.2.0, 1.3.0 and 1.3.1 of fraud-detector")
        cluster.apply(ROLLOUT, namespace=NS)
        say("Rollout fraud-detector targets 1.2.0 (the first version goes straight to stable)")
        watch_rollout(cluster, "Healthy")
        say("1.2.0 is stable and serves 100%")

        say("GitOps changes the target to 1.3.0: canary 10% -> 4s -> 50% -> 10s -> 100%")
        cluster.kubectl(
            "patch",
            "rollout.ferryman.dev",
            MODEL,
            "-n",
            NS,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"target": {"version": "1.3.0"}}}),
        )
        st = watch_rollout(cluster, "RolledBack", dataplane=dataplane, go_bad_at=50)
        say(f"ROLLED BACK automatically: {st['history'][-1]['reason'][:160]}")

        say("GitOps changes the target to 1.3.1, a good version")
        cluster.kubectl(
            "patch",
            "rollout.ferryman.dev",
            MODEL,
            "-n",
            NS,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"target": {"version": "1.3.1"}}}),
        )
        watch_rollout(cluster, "Healthy")
        say("PROMOTED: 1.3.1 is stable and serves 100%")

        print(
            "\n"
            + subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ferryman.cli",
                    "--kubeconfig",
                    str(layout.kubeconfig),
                    "status",
                    MODEL,
                    "-n",
                    NS,
                ],
                capture_output=True,
                text=True,
            ).stdout
        )
        print("Timeline")
        for at, msg in TIMELINE:
            print(f"  t+{at:5.1f}s  {msg}")
    finally:
        print("\ntearing down", flush=True)
        if operator is not None:
            operator.stop()
        if dataplane is not None:
            dataplane.stop()
        prometheus.stop()
        subprocess.run(
            [
                cluster.kubectl_bin,
                f"--kubeconfig={layout.kubeconfig}",
                "delete",
                "namespace",
                NS,
                "--wait=false",
            ],
            capture_output=True,
        )
        if not was_up:
            localcluster.down(layout)
        else:
            print("(the local control plane was running before the demo; left running)")
    print(f"demo finished in {time.monotonic() - T0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
