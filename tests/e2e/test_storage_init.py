"""The storage initializer as the init container runs it (``python -m
ferryman.storage_init``), against a loopback HTTPS server this test starts with its own
certificate authority."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.net import free_port

ARTIFACT = b"onnx-model-bytes" * 4096


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """Serves ARTIFACT at /models/fraud/model.onnx; yields (base URL, CA file, auth headers)."""
    pki = tmp_path / "pki"
    pki.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        cwd=pki,
        check=True,
        capture_output=True,
    )
    seen_auth: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen_auth.append(self.headers.get("Authorization", ""))
            if self.path != "/models/fraud/model.onnx":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(ARTIFACT)))
            self.end_headers()
            self.wfile.write(ARTIFACT)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "cert.pem", pki / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{port}", pki / "cert.pem", seen_auth
    server.shutdown()
    thread.join(timeout=5)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman.storage_init", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_correct_digest_passes(https_server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, ca, seen_auth = https_server
    digest = "sha256:" + hashlib.sha256(ARTIFACT).hexdigest()
    result = run(
        f"--uri={base}/models/fraud/model.onnx",
        f"--digest={digest}",
        f"--dest={tmp_path / 'models'}",
        f"--ca-file={ca}",
        env={"PATH": "/usr/bin:/bin", "MODEL_STORE_TOKEN": "s3cret"},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models" / "model.onnx").read_bytes() == ARTIFACT
    assert (tmp_path / "models" / ".digest").read_text().strip() == digest
    assert seen_auth == ["Bearer s3cret"]


def test_wrong_digest_fails_naming_both_digests(
    https_server: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    base, ca, _ = https_server
    wrong = "sha256:" + "0" * 64
    actual = "sha256:" + hashlib.sha256(ARTIFACT).hexdigest()
    result = run(
        f"--uri={base}/models/fraud/model.onnx",
        f"--digest={wrong}",
        f"--dest={tmp_path / 'models'}",
        f"--ca-file={ca}",
    )
    assert result.returncode == 1
    assert f"expected {wrong}, got {actual}" in result.stderr
    # Nothing is left behind for a model server to load.
    assert list((tmp_path / "models").iterdir()) == []


def test_untrusted_certificate_is_refused(
    https_server: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    base, _, _ = https_server
    result = run(
        f"--uri={base}/models/fraud/model.onnx",
        "--digest=sha256:" + "0" * 64,
        f"--dest={tmp_path / 'models'}",
    )
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_pvc_artifact_is_verified(tmp_path: Path) -> None:
    (tmp_path / "pvc" / "model-store" / "churn").mkdir(parents=True)
    (tmp_path / "pvc" / "model-store" / "churn" / "model.json").write_bytes(b"{}")
    digest = "sha256:" + hashlib.sha256(b"{}").hexdigest()
    result = run(
        "--uri=pvc://model-store/churn/model.json",
        f"--digest={digest}",
        f"--dest={tmp_path / 'models'}",
        f"--pvc-root={tmp_path / 'pvc'}",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models" / "model.json").read_bytes() == b"{}"


def test_unsupported_scheme_says_so(tmp_path: Path) -> None:
    result = run(
        "--uri=s3://models/fraud/model.onnx", "--digest=sha256:" + "0" * 64, f"--dest={tmp_path}"
    )
    assert result.returncode == 1
    assert "scheme 's3'" in result.stderr and "not supported" in result.stderr
