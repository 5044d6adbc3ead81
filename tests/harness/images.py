"""Which model-server image the e2e suite's ModelVersions and Deployments run.

On the local control plane kwok plays every pod, so the suite's images are fictional
(``ghcr.io/acme/onnx-server:2.4.1``) and never pulled. A real kubelet (kind, any cluster
given by FERRYMAN_TEST_KUBECONFIG) pulls and runs them, and a fictional image never
becomes Ready. ``FERRYMAN_TEST_MODEL_IMAGE`` names a real one instead, normally the
tests' own model server (tests/model_server, published by the release workflow as
ghcr.io/ferryman-dev/test-model-server; .github/workflows/e2e-kind.yml builds and loads
it): it listens on 8080 and answers ``/ready``, the ModelVersion serving defaults.
Standard library only (tests/cases imports it)."""

from __future__ import annotations

import copy
import os
from typing import Any

MODEL_IMAGE_ENV = "FERRYMAN_TEST_MODEL_IMAGE"
FICTIONAL_MODEL_IMAGE = "ghcr.io/acme/onnx-server:2.4.1"
# What the test model server answers (tests/model_server/server.py).
SERVER_PORT, SERVER_READY_PATH = 8080, "/ready"


def model_image(default: str = FICTIONAL_MODEL_IMAGE) -> str:
    """``$FERRYMAN_TEST_MODEL_IMAGE`` when set (non-empty), else ``default``."""
    return os.environ.get(MODEL_IMAGE_ENV) or default


def with_model_image(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``objects`` as they are without FERRYMAN_TEST_MODEL_IMAGE; with it, copies whose
    ModelVersions serve that image the way the test model server needs: port 8080,
    readiness path /ready, no command or args (an example's ``--model-dir=...`` is for
    its own fictional server) and no resource requests (an example asks 500m CPU and
    1 GiB per replica for its fictional server; the test server needs a few MiB, and a
    one-node kind cluster would leave pods Pending)."""
    if not os.environ.get(MODEL_IMAGE_ENV):
        return objects
    out = copy.deepcopy(objects)
    for obj in out:
        if obj.get("kind") != "ModelVersion":
            continue
        serving = obj["spec"]["serving"]
        serving.update(image=model_image(), port=SERVER_PORT, readinessPath=SERVER_READY_PATH)
        serving.pop("command", None)
        serving.pop("args", None)
        serving.pop("resources", None)
    return out
