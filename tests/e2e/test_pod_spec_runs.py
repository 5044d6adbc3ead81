"""Issue 14 §4: the pod spec ferryman renders for a version runs, as local processes.

kwok never runs a container. Here a version's Deployment is rendered by the operator's
own builders (``plan.serving.deployment``, with a storage-initializer image, so
``plan.initializer`` adds the init container and the model volume) for a ModelVersion
whose ``serving.command`` runs the tiny test model server (tests/model_server/
server.py, at ``/srv/model-server`` in its image); ``harness.podrun`` runs the init
container and then the main container with the same command, args and env, the model
volume mapped to a temporary directory, and the readiness probe of the rendered spec is
asked. No cluster is needed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from cases.api_cases import model_version
from cases.api_cases import rollout as rollout_manifest
from e2e.test_storage_init import ARTIFACT, https_server
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import initializer, serving
from harness import podrun
from harness.net import free_port

__all__ = ["https_server"]  # the fixture, used by name
SERVER_DIR = Path(__file__).resolve().parents[1] / "model_server"
IN_IMAGE = "/srv/model-server"
GOOD = "sha256:" + hashlib.sha256(ARTIFACT).hexdigest()


def rendered(uri: str, digest: str, port: int) -> dict[str, Any]:
    """The pod template of version 2.0.0's Deployment as the operator renders it."""
    mv = model_version(name="fraud-2-0-0", version="2.0.0")
    mv["metadata"]["namespace"] = "ns"
    mv["spec"]["artifact"] = {"uri": uri, "digest": digest}
    mv["spec"]["serving"].update(
        command=["python", f"{IN_IMAGE}/server.py"], args=["--port", "$(SERVER_PORT)"], port=port
    )
    mv["spec"]["serving"]["env"] = [{"name": "SERVER_PORT", "value": str(port)}]
    ro = rollout_manifest("fraud")
    ro["metadata"].update(namespace="ns", uid="u-1")
    dep = serving.deployment(
        ModelVersion.model_validate(mv),
        Rollout.model_validate(ro),
        replicas=1,
        init_image="ghcr.io/ferryman-dev/ferryman:test",
    )
    template: dict[str, Any] = dep["spec"]["template"]
    return template


def pod(template: dict[str, Any], tmp_path: Path, ca: Path) -> podrun.Pod:
    return podrun.Pod(
        template=template,
        workdir=tmp_path / "pod",
        image_paths={IN_IMAGE: SERVER_DIR},
        extra_env={"SSL_CERT_FILE": str(ca)},  # the image's CA bundle
    )


def wait_ready(local: podrun.Pod, proc: subprocess.Popen[bytes]) -> int | None:
    for _ in range(100):
        code = local.ready(serving.SERVER_CONTAINER)
        if code is not None or proc.poll() is not None:
            return code
        time.sleep(0.1)
    return None


def score(url: str) -> float:
    req = urllib.request.Request(
        url + "/predict", data=json.dumps({"features": [1, 2, 3, 4]}).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return float(json.load(resp)["score"])


def test_the_rendered_pod_runs_and_answers_its_readiness_probe_with_the_verified_model(
    https_server: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    base, ca, _ = https_server
    port = free_port()
    template = rendered(base + "/models/fraud/model.onnx", GOOD, port)
    local = pod(template, tmp_path, ca)
    init = local.run(initializer.INIT_CONTAINER)
    assert init.exit_code == 0 and init.message == "", init.logs
    volume = local.workdir / "volumes" / initializer.MODEL_VOLUME
    assert (volume / "model.onnx").read_bytes() == ARTIFACT
    with podrun.running(local, serving.SERVER_CONTAINER) as proc:
        assert wait_ready(local, proc) == 200, (local.workdir / "logs" / "model-server").read_text()
        served = score(f"http://127.0.0.1:{port}")
    # The same model from a directory the test writes itself: the same score, so the
    # server loaded the verified bytes (its fingerprint is the files under MODEL_DIR).
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "model.onnx").write_bytes(ARTIFACT)
    (reference / ".digest").write_text(GOOD + "\n")
    other = free_port()
    env = {"PATH": "/usr/bin:/bin", "MODEL_NAME": "fraud", "MODEL_VERSION": "2.0.0"}
    ref = subprocess.Popen(
        [sys.executable, str(SERVER_DIR / "server.py"), "--port", str(other)],
        env={**env, "MODEL_DIR": str(reference)},
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                assert score(f"http://127.0.0.1:{other}") == served
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the reference server never answered")
    finally:
        ref.terminate()
        ref.wait(timeout=10)


def test_a_digest_mismatch_ends_in_the_termination_message_and_nothing_serves(
    https_server: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    base, ca, _ = https_server
    wrong = "sha256:" + "0" * 64
    template = rendered(base + "/models/fraud/model.onnx", wrong, free_port())
    local = pod(template, tmp_path, ca)
    init = local.run(initializer.INIT_CONTAINER)
    assert init.exit_code != 0
    # The kubelet's message: the initializer's file, or (FallbackToLogsOnError) the logs.
    assert wrong in init.message and "mismatch" in init.message.lower(), init
    assert list((local.workdir / "volumes" / initializer.MODEL_VOLUME).iterdir()) == []
