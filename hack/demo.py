#!/usr/bin/env python3
"""``make demo``: the README's main command.

Brings up the local control plane (building its binaries on the first run), applies a
sample model-server Deployment, shows it becoming Ready, and tears everything down
again (a cluster that was already running before the demo is left running).

The full ferryman story (operator, Prometheus, a canary that goes bad and is rolled back
automatically) replaces the middle part as the Rollout and analysis issues land.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "cluster"))
import localcluster

NAMESPACE = "ferryman-demo"
SAMPLE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "fraud-detector-1-3-0",
        "labels": {"ferryman.dev/model": "fraud-detector"},
    },
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "fraud-detector"}},
        "template": {
            "metadata": {"labels": {"app": "fraud-detector"}},
            "spec": {"containers": [{"name": "server", "image": "ghcr.io/acme/onnx-server:2.4.1"}]},
        },
    },
}


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def main() -> int:
    t0 = time.monotonic()
    layout = localcluster.Layout()
    was_up = localcluster.is_up(layout)
    say("local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
    localcluster.up(layout)
    kubectl = str(localcluster.Binaries.from_cache().kubectl)

    def k(*args: str, input: str | None = None) -> str:
        out = subprocess.run(
            [kubectl, f"--kubeconfig={layout.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out

    try:
        say(f"namespace {NAMESPACE}, sample Deployment with 3 replicas")
        k("create", "namespace", NAMESPACE)
        print(k("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(SAMPLE)).strip())
        say("waiting for it to become Ready (kwok makes each pod Ready after a delay)")
        started = time.monotonic()
        while True:
            status = json.loads(
                k("get", "deployment", "fraud-detector-1-3-0", "-n", NAMESPACE, "-o", "json")
            )["status"]
            ready = status.get("availableReplicas", 0)
            print(f"  t+{time.monotonic() - started:4.1f}s  available {ready}/3", flush=True)
            if ready == 3:
                break
            if time.monotonic() - started > 120:
                raise SystemExit("the sample Deployment did not become Ready in 120s")
            time.sleep(0.5)
        print(k("get", "deployment,pods", "-n", NAMESPACE, "-o", "wide"))
    finally:
        say("tearing down")
        subprocess.run(
            [
                kubectl,
                f"--kubeconfig={layout.kubeconfig}",
                "delete",
                "namespace",
                NAMESPACE,
                "--wait=false",
            ],
            capture_output=True,
        )
        if not was_up:
            localcluster.down(layout)
        else:
            print("(the cluster was running before the demo; left running)")
    say(f"demo finished in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
