"""The tiny model server for tests (tests/model_server/server.py) as a real process on
127.0.0.1: it answers /ready, /predict (deterministic scores from its model's digest, 400
on bad input, injected 500s with MODEL_ERROR_EVERY) and /metrics, whose counters and
histogram count exactly the /predict requests made. Its Dockerfile passes hadolint with
every OCI label and pins prometheus-client to the operator's own pin. The suite's
ModelVersions serve its image only when FERRYMAN_TEST_MODEL_IMAGE asks (harness.images)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from cases.api_cases import model_version
from harness import images
from image.test_lint import hadolint
from image.tools import ROOT

SERVER_DIR = ROOT / "tests" / "model_server"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@contextmanager
def model_server(**env: str) -> Iterator[str]:
    """Start server.py on 127.0.0.1 (a free port) with MODEL_* ``env``; yield its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_DIR / "server.py"), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)$", line.strip())
        assert found, f"unexpected first line {line!r}"
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def call(url: str, body: object | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            raw, code = resp.read(), resp.status
    except urllib.error.HTTPError as e:
        raw, code = e.read(), e.code
    text = raw.decode()
    return code, (text if url.endswith("/metrics") else json.loads(text))


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of ``name`` whose labels include ``labels`` (0 if absent)."""
    for line in metrics.splitlines():
        m = re.match(r"(\w+)\{(.*)\} (\S+)$", line)
        if m and m.group(1) == name:
            have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if all(have.get(k) == v for k, v in labels.items()):
                return float(m.group(3))
    return 0.0


def test_ready_predict_and_metrics_count_the_requests() -> None:
    env = {"MODEL_NAME": "fraud", "MODEL_VERSION": "1.3.0", "MODEL_DIGEST": DIGEST_A}
    with model_server(**env) as url:
        assert call(url + "/ready") == (200, {"ready": True, "model": "fraud", "version": "1.3.0"})
        code, first = call(url + "/predict", {"features": [0.5, -1.0, 2.0]})
        assert code == 200 and first["model"] == "fraud" and first["version"] == "1.3.0"
        assert 0 < first["score"] < 1
        assert call(url + "/predict", {"features": [0.5, -1.0, 2.0]}) == (200, first)
        other = call(url + "/predict", {"features": [3.0, 1.0]})[1]["score"]
        assert other != first["score"]
        assert call(url + "/predict", {"features": ["x"]})[0] == 400
        assert call(url + "/predict", {"rows": []})[0] == 400
        assert call(url + "/nope")[0] == 404
        code, metrics = call(url + "/metrics")
    assert code == 200
    labels = {"model": "fraud", "version": "1.3.0"}
    assert sample(metrics, "model_requests_total", code="200", **labels) == 3
    assert sample(metrics, "model_requests_total", code="400", **labels) == 2
    assert sample(metrics, "model_request_seconds_count", **labels) == 5
    assert sample(metrics, "model_request_seconds_bucket", le="+Inf", **labels) == 5


def test_scores_follow_the_model_digest_and_files(tmp_path: Any) -> None:
    features = {"features": [1.0, 2.0, -0.5, 4.0]}
    scores = []
    for digest in (DIGEST_A, DIGEST_B, DIGEST_A):
        with model_server(MODEL_VERSION="1.0.0", MODEL_DIGEST=digest) as url:
            scores.append(call(url + "/predict", features)[1]["score"])
    assert scores[0] == scores[2] != scores[1]
    # ferryman sets MODEL_DIR even when no initializer filled it: the digest decides.
    with model_server(MODEL_DIGEST=DIGEST_A, MODEL_DIR=str(tmp_path / "absent")) as url:
        assert call(url + "/predict", features)[1]["score"] == scores[0]
    (tmp_path / "model.onnx").write_bytes(b"weights")
    with model_server(MODEL_DIGEST=DIGEST_A, MODEL_DIR=str(tmp_path)) as url:
        from_file = call(url + "/predict", features)[1]["score"]
    assert from_file not in scores


def test_error_every_injects_500s_that_metrics_count() -> None:
    with model_server(MODEL_VERSION="2.0.0", MODEL_ERROR_EVERY="3") as url:
        codes = [call(url + "/predict", {"features": [1]})[0] for _ in range(6)]
        metrics = call(url + "/metrics")[1]
    assert codes == [200, 200, 500, 200, 200, 500]
    assert sample(metrics, "model_requests_total", code="500", version="2.0.0") == 2
    assert sample(metrics, "model_requests_total", code="200", version="2.0.0") == 4


def test_model_server_dockerfile_passes_hadolint_and_pins_prometheus_client() -> None:
    result = hadolint(SERVER_DIR / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("prometheus-client=="))
    assert f"pip install --no-cache-dir {pin}\n" in (SERVER_DIR / "Dockerfile").read_text()


def test_the_suite_serves_the_model_image_only_when_asked(monkeypatch: Any) -> None:
    example = ROOT / "examples" / "modelversions" / "fraud-detector.yaml"
    written = [d for d in yaml.safe_load_all(example.read_text()) if d]
    others = [{"kind": "Rollout", "spec": {"serving": {"image": "x"}}}]
    monkeypatch.delenv(images.MODEL_IMAGE_ENV, raising=False)
    assert images.with_model_image(written + others) == written + others
    assert images.model_image() == images.FICTIONAL_MODEL_IMAGE
    monkeypatch.setenv(images.MODEL_IMAGE_ENV, "ghcr.io/ferryman-dev/test-model-server:e2e")
    served = images.with_model_image(written + others)
    assert served[len(written) :] == others
    for mv in served[: len(written)]:
        assert mv["spec"]["serving"] == {
            "image": "ghcr.io/ferryman-dev/test-model-server:e2e",
            "port": 8080,
            "readinessPath": "/ready",
        }
    assert written[0]["spec"]["serving"]["args"] == ["--model-dir=/mnt/models"]  # a copy
    assert model_version()["spec"]["serving"]["image"] == images.model_image()
