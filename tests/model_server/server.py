"""A tiny, real model server for tests on real clusters (kind, any kubelet that runs
containers): the local control plane's kwok pods run nothing, but a real kubelet needs an
image whose readiness probe answers. ``python server.py [--host H] [--port P]
[--model-dir DIR]``; the image (this directory's Dockerfile) runs it on 0.0.0.0:8080.

Endpoints (the ModelVersion serving defaults: port 8080, readinessPath /ready):

- ``GET /ready``: 200 ``{"ready": true, "model": M, "version": V}``.
- ``POST /predict`` with ``{"features": [x0, x1, ...]}`` (numbers): 200
  ``{"model": M, "version": V, "score": s}``, ``s = sigmoid(sum(w[i % 8] * x_i))`` in
  (0, 1), the 8 weights in [-1, 1) taken from the sha256 of the model (see ``Model``), so
  equal models give equal scores and another artifact another one. 400 on bad input.
  With ``MODEL_ERROR_EVERY=N`` (N > 0) every Nth request answers 500 instead: a bad
  version for rollback tests on a real cluster.
- ``GET /metrics``: Prometheus text: ``model_requests_total{model,version,code}`` and the
  histogram ``model_request_seconds{model,version}`` (seconds) of the /predict requests,
  the names the dataplane simulation (tests/harness/dataplane.py) and the examples'
  analysis queries use; Prometheus adds ``namespace`` when it scrapes a pod.

The model comes from the environment ferryman gives every model container
(ferryman.plan.serving): ``MODEL_NAME``, ``MODEL_VERSION``, ``MODEL_DIGEST``; when
``MODEL_DIR`` (or ``--model-dir``) holds files, their bytes are hashed instead, so a
verified artifact downloaded by the storage initializer is what is served.
Standard library plus prometheus-client (pinned like the operator's, pyproject.toml).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
MAX_BODY = 1 << 20  # bytes


class Model:
    """A deterministic toy model: 8 weights in [-1, 1) from the bytes of a sha256."""

    def __init__(self, name: str, version: str, fingerprint: bytes) -> None:
        self.name, self.version = name, version
        digest = hashlib.sha256(fingerprint).digest()
        self.weights = [(digest[i] - 128) / 128 for i in range(8)]

    @classmethod
    def from_env(cls, env: Mapping[str, str], model_dir: str | None) -> Model:
        """The model of ``MODEL_NAME``/``MODEL_VERSION``, fingerprinted by the files under
        ``model_dir`` (sorted by path) when there are any, else by ``MODEL_DIGEST`` (or the
        version when that is unset too)."""
        name = env.get("MODEL_NAME", "model")
        version = env.get("MODEL_VERSION", "0.0.0")
        files = sorted(p for p in Path(model_dir).rglob("*") if p.is_file()) if model_dir else []
        if files:
            fingerprint = b"".join(p.read_bytes() for p in files)
        else:
            fingerprint = env.get("MODEL_DIGEST", version).encode()
        return cls(name, version, fingerprint)

    def predict(self, features: Sequence[float]) -> float:
        z = sum(self.weights[i % len(self.weights)] * x for i, x in enumerate(features))
        return 1 / (1 + math.exp(-max(-60.0, min(60.0, z))))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: Model, error_every: int = 0) -> None:
        super().__init__(address, Handler)
        self.model, self.error_every = model, error_every
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "model_requests",
            "/predict requests served, by HTTP status code",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "model_request_seconds",
            "/predict request latency in seconds",
            ["model", "version"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._count, self._lock = 0, threading.Lock()

    def next_fails(self) -> bool:
        with self._lock:
            self._count += 1
            return self.error_every > 0 and self._count % self.error_every == 0


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # quiet: metrics count
        pass

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: object) -> None:
        self._send(code, json.dumps(obj).encode())

    def do_GET(self) -> None:
        model = self.server.model
        if self.path == "/ready":
            self._json(200, {"ready": True, "model": model.name, "version": model.version})
        elif self.path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        else:
            self._json(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/predict":
            self._json(404, {"error": f"no such path {self.path}"})
            return
        start = time.perf_counter()
        code, body = self._predict()
        model = self.server.model
        self._json(code, body)
        self.server.requests.labels(model.name, model.version, str(code)).inc()
        self.server.latency.labels(model.name, model.version).observe(time.perf_counter() - start)

    def _predict(self) -> tuple[int, dict[str, object]]:
        model = self.server.model
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                raise ValueError(f"body must be 1..{MAX_BODY} bytes of JSON")
            features = json.loads(self.rfile.read(length))["features"]
            if not isinstance(features, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in features
            ):
                raise ValueError("features must be a list of numbers")
        except (ValueError, KeyError, TypeError) as e:
            return 400, {"error": f'expected {{"features": [numbers]}}: {e}'}
        if self.server.next_fails():
            return 500, {"error": "injected failure (MODEL_ERROR_EVERY)"}
        score = model.predict(features)
        return 200, {"model": model.name, "version": model.version, "score": score}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR"))
    args = parser.parse_args(argv)
    model = Model.from_env(os.environ, args.model_dir)
    server = Server(
        (args.host, args.port), model, int(os.environ.get("MODEL_ERROR_EVERY", "0") or 0)
    )
    host, port = args.host, server.server_port
    print(f"serving {model.name} {model.version} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
