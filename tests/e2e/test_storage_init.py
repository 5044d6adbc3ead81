"""The storage initializer as the init container runs it (``python -m
ferryman.storage_init`` with the init container's arguments), against real stores on
127.0.0.1: an HTTPS server with its own certificate authority, S3 (moto in server mode,
IAM auth on), GCS (fake-gcs-server behind a proxy that demands the OAuth token a
service-account key earns), an OCI registry (CNCF distribution, htpasswd), and a claim
directory. Each store serves a file and a directory tree; each failure kind ends with one
``<Reason>: <message>`` line in the termination-message file and an empty model volume.
No cluster needed (hack/tools/build.sh builds the servers: ``make storage-servers-build``).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import stores
from harness.net import free_port

ARTIFACT = b"onnx-model-bytes" * 4096
# A directory artifact: sharded weights and a config, as a Triton/vLLM model would have.
TREE = {
    "config.json": b'{"architectures": ["Tiny"]}',
    "weights/model-00001-of-00002.bin": random.Random(1).randbytes(200_000),
    "weights/model-00002-of-00002.bin": random.Random(2).randbytes(150_000),
}
FILE_DIGEST = "sha256:" + hashlib.sha256(ARTIFACT).hexdigest()
WRONG = "sha256:" + "0" * 64
GCS_TOKEN = "gcs-access-token-7"


def coreutils_tree_digest(root: Path) -> str:
    """docs/artifacts.md's shell recipe, run as written: an implementation independent
    of ferryman.storage.tree."""
    script = (
        "cd \"$1\" && find . -type f | sed 's|^\\./||' | LC_ALL=C sort "
        "| xargs -d '\\n' sha256sum | sha256sum"
    )
    out = subprocess.run(
        ["bash", "-c", script, "_", str(root)], capture_output=True, text=True, check=True
    )
    return "sha256:" + out.stdout.split()[0]


@pytest.fixture(scope="module")
def tree_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "fraud"
    for rel, body in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return root


@pytest.fixture(scope="module")
def tree_digest(tree_src: Path) -> str:
    return coreutils_tree_digest(tree_src)


@dataclass
class Result:
    code: int
    stderr: str
    termination: str  # the termination-message file's content
    dest: Path


def run(tmp: Path, uri: str, digest: str, env: dict[str, str], *extra: str) -> Result:
    """The init container's command and arguments (plan/initializer.py), as a process."""
    dest = tmp / "models"
    log = tmp / "termination-log"
    log.write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferryman.storage_init",
            f"--uri={uri}",
            f"--digest={digest}",
            f"--dest={dest}",
            f"--termination-log={log}",
            "--timeout=10",
            *extra,
        ],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        timeout=120,
    )
    return Result(proc.returncode, proc.stderr, log.read_text(), dest)


def assert_failed(result: Result, reason: str, *secrets: str) -> None:
    assert result.code == 1, result.stderr
    lines = result.termination.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{reason}: "), result.termination
    assert len(lines[0].encode()) <= 1000
    for secret in secrets:
        assert secret not in result.termination and secret not in result.stderr
    # Nothing a model server could load is left behind.
    assert not result.dest.exists() or list(result.dest.iterdir()) == []


# --- https ---------------------------------------------------------------------------


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """Serves ARTIFACT at /models/fraud/model.onnx (and at /short with a Content-Length
    that lies); a token other than ``Bearer s3cret`` or none is answered 403 when one is
    sent. Yields (base URL, CA file, the Authorization headers seen)."""
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
            auth = self.headers.get("Authorization", "")
            seen_auth.append(auth)
            if auth and auth != "Bearer s3cret" and auth != "Bearer from-the-wheel":
                self.send_error(403)
                return
            if self.path not in ("/models/fraud/model.onnx", "/short"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(ARTIFACT)))
            self.end_headers()
            self.wfile.write(ARTIFACT if self.path != "/short" else ARTIFACT[:1000])
            self.close_connection = True

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


def test_https_file_is_fetched_and_verified(https_server, tmp_path: Path) -> None:
    base, ca, seen_auth = https_server
    env = {"MODEL_STORE_TOKEN": "s3cret"}
    result = run(tmp_path, f"{base}/models/fraud/model.onnx", FILE_DIGEST, env, f"--ca-file={ca}")
    assert result.code == 0, result.stderr
    assert (result.dest / "model.onnx").read_bytes() == ARTIFACT
    assert (result.dest / ".digest").read_text().strip() == FILE_DIGEST
    assert result.termination == ""
    assert seen_auth == ["Bearer s3cret"]


def test_https_failures_each_have_their_reason(https_server, tmp_path: Path) -> None:
    base, ca, _ = https_server
    uri = f"{base}/models/fraud/model.onnx"
    mismatch = run(tmp_path, uri, WRONG, {}, f"--ca-file={ca}")
    assert_failed(mismatch, "DigestMismatch")
    assert f"expected {WRONG}, got {FILE_DIGEST}" in mismatch.termination
    assert_failed(run(tmp_path, f"{base}/nope.onnx", WRONG, {}, f"--ca-file={ca}"), "NotFound")
    denied = run(tmp_path, uri, WRONG, {"MODEL_STORE_TOKEN": "stolen-token"}, f"--ca-file={ca}")
    assert_failed(denied, "AccessDenied", "stolen-token")
    assert_failed(run(tmp_path, f"{base}/short", WRONG, {}, f"--ca-file={ca}"), "Truncated")
    untrusted = run(tmp_path, uri, WRONG, {})
    assert_failed(untrusted, "Unreachable")
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.termination


# --- S3, GCS, OCI ----------------------------------------------------------------------


@dataclass
class Store:
    """One store's URIs and environments for the tests below."""

    file_uri: str
    tree_uri: str
    missing_uri: str
    env: dict[str, str]
    denied_env: dict[str, str]  # wrong credentials
    # The same store behind a proxy that closes the connection mid-body (``cut``), and
    # one that sends a short body with a matching Content-Length (``lie``): (URI, env).
    cut: tuple[str, dict[str, str]]
    lie: tuple[str, dict[str, str]]
    secrets: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("s3")
    objects = {"models/fraud/model.onnx": ARTIFACT}
    objects |= {f"models/fraud-tree/{k}": v for k, v in TREE.items()}
    objects["models/fraud-tree/"] = b""  # a directory marker, as consoles create
    with stores.moto_s3(tmp, objects) as server:

        def cut(method: str, path: str) -> bool:
            return method == "GET" and path.startswith("/models/fraud/model.onnx")

        with (
            stores.Proxy(server.endpoint, truncate=cut) as cutting,
            stores.Proxy(server.endpoint, truncate=cut, consistent=True) as lying,
        ):
            env = server.env()
            uri = "s3://models/fraud/model.onnx"
            yield Store(
                uri,
                "s3://models/fraud-tree",
                "s3://models/absent/model.onnx",
                env,
                {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret-key"},
                (uri, {**env, "AWS_ENDPOINT_URL": cutting.url}),
                (uri, {**env, "AWS_ENDPOINT_URL": lying.url}),
                [server.secret, "not-the-secret-key"],
            )


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("gcs")
    objects = {"models/fraud/model.onnx": ARTIFACT}
    objects |= {f"models/fraud-tree/{k}": v for k, v in TREE.items()}
    with (
        stores.fake_gcs(tmp, objects) as endpoint,
        stores.TokenServer("good-key", GCS_TOKEN) as tokens,
        stores.Proxy(endpoint, bearer=GCS_TOKEN) as authed,
        # google-cloud-storage retries a cut download (and would resume it from the
        # cut), so the proxy cuts every body at its start: no progress, ever.
        stores.Proxy(
            endpoint,
            bearer=GCS_TOKEN,
            truncate=lambda m, p: m == "GET" and "alt=media" in p,
            keep=0,
        ) as cutting,
        stores.Proxy(
            endpoint,
            bearer=GCS_TOKEN,
            truncate=lambda m, p: m == "GET" and "alt=media" in p,
            consistent=True,
        ) as lying,
    ):
        good = stores.service_account_key(tmp, "good-key", tokens.url)
        bad = stores.service_account_key(tmp, "revoked-key", tokens.url)
        env = {"GCS_ENDPOINT_URL": authed.url, "GOOGLE_SERVICE_ACCOUNT_JSON": good}
        uri = "gs://models/fraud/model.onnx"
        yield Store(
            uri,
            "gs://models/fraud-tree",
            "gs://models/absent/model.onnx",
            env,
            {**env, "GOOGLE_SERVICE_ACCOUNT_JSON": bad},
            (uri, {**env, "GCS_ENDPOINT_URL": cutting.url}),
            (uri, {**env, "GCS_ENDPOINT_URL": lying.url}),
            [GCS_TOKEN, "PRIVATE KEY"],
        )


@pytest.fixture(scope="module")
def oci(tmp_path_factory: pytest.TempPathFactory, tree_src: Path) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("oci")
    one = tmp / "one"
    one.mkdir()
    (one / "model.onnx").write_bytes(ARTIFACT)
    with stores.registry(tmp) as reg:
        stores.oras_push(reg, "models/fraud:1.3.0", one, ["model.onnx"])
        stores.oras_push(reg, "models/fraud-tree:1.3.0", tree_src, sorted(TREE))

        def blobs(method: str, path: str) -> bool:
            return method == "GET" and "/blobs/" in path

        with (
            stores.Proxy(f"http://{reg.host}", truncate=blobs) as cutting,
            stores.Proxy(f"http://{reg.host}", truncate=blobs, consistent=True) as lying,
        ):
            # The proxies' 127.0.0.1 hosts are plain HTTP like the registry's.
            def via(proxy: stores.Proxy) -> str:
                return f"oci://{proxy.url.removeprefix('http://')}/models/fraud:1.3.0"

            env = reg.env()
            yield Store(
                f"oci://{reg.host}/models/fraud:1.3.0",
                f"oci://{reg.host}/models/fraud-tree:1.3.0",
                f"oci://{reg.host}/models/absent:1.3.0",
                env,
                {**env, "OCI_PASSWORD": "not-the-password"},
                (via(cutting), env),
                (via(lying), env),
                [reg.password, "not-the-password"],
            )


STORES = ["s3", "gcs", "oci"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def test_a_file_is_fetched_and_verified(store: Store, tmp_path: Path) -> None:
    result = run(tmp_path, store.file_uri, FILE_DIGEST, store.env)
    assert result.code == 0, result.stderr
    assert (result.dest / "model.onnx").read_bytes() == ARTIFACT
    assert (result.dest / ".digest").read_text().strip() == FILE_DIGEST
    assert result.termination == ""


def test_a_directory_is_fetched_and_verified_by_its_tree_digest(
    store: Store, tree_digest: str, tmp_path: Path
) -> None:
    result = run(tmp_path, store.tree_uri, tree_digest, store.env)
    assert result.code == 0, result.stderr
    root = result.dest / "fraud-tree"
    got = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert got == TREE
    assert coreutils_tree_digest(root) == tree_digest


def test_a_directory_with_another_digest_is_refused(store: Store, tree_digest: str, tmp_path):
    result = run(tmp_path, store.tree_uri, FILE_DIGEST, store.env)
    assert_failed(result, "DigestMismatch", *store.secrets)
    assert f"got {tree_digest}" in result.termination


def test_a_file_with_another_digest_is_refused(store: Store, tmp_path: Path) -> None:
    result = run(tmp_path, store.file_uri, WRONG, store.env)
    assert_failed(result, "DigestMismatch", *store.secrets)
    assert f"expected {WRONG}, got {FILE_DIGEST}" in result.termination


def test_a_missing_artifact_is_not_found(store: Store, tmp_path: Path) -> None:
    assert_failed(run(tmp_path, store.missing_uri, WRONG, store.env), "NotFound", *store.secrets)


def test_wrong_credentials_are_access_denied(store: Store, tmp_path: Path) -> None:
    result = run(tmp_path, store.file_uri, FILE_DIGEST, store.denied_env)
    assert_failed(result, "AccessDenied", *store.secrets)


def test_a_download_cut_short_is_truncated(store: Store, tmp_path: Path) -> None:
    uri, env = store.cut
    # A short retry deadline: the store's client retries the cut download until then.
    result = run(tmp_path, uri, FILE_DIGEST, env, "--timeout=3")
    assert_failed(result, "Truncated", *store.secrets)


def test_a_short_body_that_claims_to_be_whole_is_truncated(store: Store, tmp_path: Path) -> None:
    """The body's own Content-Length agrees with it; only the size the store listed
    (HEAD, object metadata, the OCI descriptor) shows that bytes are missing."""
    uri, env = store.lie
    result = run(tmp_path, uri, FILE_DIGEST, env, "--timeout=3")
    assert_failed(result, "Truncated", *store.secrets)
    assert "bytes" in result.termination


# --- pvc ---------------------------------------------------------------------------------


def claim(tmp_path: Path, tree_src: Path) -> Path:
    root = tmp_path / "pvc"
    (root / "model-store" / "churn").mkdir(parents=True)
    (root / "model-store" / "churn" / "model.onnx").write_bytes(ARTIFACT)
    shutil.copytree(tree_src, root / "model-store" / "fraud-tree")
    return root


def test_pvc_file_and_directory_are_verified_in_place(
    tmp_path: Path, tree_src: Path, tree_digest: str
) -> None:
    root = claim(tmp_path, tree_src)
    for uri, digest in [
        ("pvc://model-store/churn/model.onnx", FILE_DIGEST),
        ("pvc://model-store/fraud-tree", tree_digest),
    ]:
        result = run(tmp_path, uri, digest, {}, f"--pvc-root={root}")
        assert result.code == 0, result.stderr
        assert not result.dest.exists()  # no copy: the model server mounts the claim


def test_pvc_failures_each_have_their_reason(tmp_path: Path, tree_src: Path) -> None:
    root = claim(tmp_path, tree_src)
    pvc = f"--pvc-root={root}"
    assert_failed(run(tmp_path, "pvc://model-store/fraud-tree", WRONG, {}, pvc), "DigestMismatch")
    assert_failed(run(tmp_path, "pvc://model-store/absent", WRONG, {}, pvc), "NotFound")
    assert_failed(run(tmp_path, "pvc://other-claim/m.onnx", WRONG, {}, pvc), "NotFound")
    os.symlink("/etc/passwd", root / "model-store" / "fraud-tree" / "weights" / "link")
    symlink = run(tmp_path, "pvc://model-store/fraud-tree", WRONG, {}, pvc)
    assert_failed(symlink, "InvalidArtifact")
    assert "symlink 'weights/link'" in symlink.termination


def test_an_unknown_scheme_or_digest_is_unsupported(tmp_path: Path) -> None:
    assert_failed(run(tmp_path, "ftp://host/m.onnx", WRONG, {}), "Unsupported")
    assert_failed(run(tmp_path, "s3://b/m.onnx", "md5:abc", {}), "Unsupported")


# --- kubectl ferryman digest ---------------------------------------------------------------


def cli_digest(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "digest", target, "--timeout=10"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        timeout=120,
    )


def test_the_cli_prints_what_the_initializer_verifies(
    store: Store, tree_src: Path, tree_digest: str
) -> None:
    """The digest a user computes from the store, or from the local copy she pushed, is
    the one the initializer accepts (test_a_directory_is_fetched_and_verified...)."""
    for target, expected in [
        (store.file_uri, FILE_DIGEST),
        (store.tree_uri, tree_digest),
        (str(tree_src), tree_digest),
    ]:
        out = cli_digest(target, store.env)
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"{expected}\n"
    missing = cli_digest(store.missing_uri, store.env)
    # The last line (oras prints the registry's "manifest unknown" before it).
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1].startswith("error: NotFound: ")
