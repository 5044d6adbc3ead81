"""Real artifact stores on 127.0.0.1 for the storage initializer's tests.

- S3: moto in server mode (``python -m moto.server``) from its own virtualenv, with IAM
  authentication on (``INITIAL_NO_AUTH_ACTION_COUNT``): the first three requests create a
  user, its access key and an ``s3:*`` policy; every later request must be signed by
  that key, so a wrong key is refused (403) as by AWS.
- OCI: the CNCF distribution registry (``registry serve``), in-memory storage.
- GCS: fsouza/fake-gcs-server over plain HTTP, in-memory.

The binaries are built by ``hack/tools/build.sh registry fake-gcs-server moto`` (``make
storage-servers-build``) into ``$FERRYMAN_CACHE``; a missing one is a FileNotFoundError,
a test failure, never a skip.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import subprocess
import textwrap
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.net import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
VERSIONS_ENV = ROOT / "hack" / "tools" / "versions.env"


def version(key: str) -> str:
    for line in VERSIONS_ENV.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    raise KeyError(key)


def cache() -> Path:
    return Path(os.environ.get("FERRYMAN_CACHE", Path.home() / ".cache" / "ferryman"))


def built(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make storage-servers-build`")
    return path


def registry_binary() -> Path:
    return built(cache() / "bin" / f"registry-{version('DISTRIBUTION_VERSION')}" / "registry")


def fake_gcs_binary() -> Path:
    v = version("FAKE_GCS_SERVER_VERSION")
    return built(cache() / "bin" / f"fake-gcs-server-{v}" / "fake-gcs-server")


def moto_python() -> Path:
    return built(cache() / "venv" / f"moto-{version('MOTO_VERSION')}" / "bin" / "python")


@contextmanager
def process(
    argv: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    try:
        try:
            wait_port(port, timeout=60)
        except TimeoutError:
            raise AssertionError(f"{argv[0]} did not listen:\n{log.read_text()[-3000:]}") from None
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class S3:
    endpoint: str
    key_id: str
    secret: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": "us-east-1",
        }


_S3_SETUP = textwrap.dedent(
    """
    import json, sys, boto3
    endpoint, objects = sys.argv[1], json.load(sys.stdin)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1")
    iam = boto3.client("iam", aws_access_key_id="x", aws_secret_access_key="x", **kw)
    iam.create_user(UserName="ferryman")
    key = iam.create_access_key(UserName="ferryman")["AccessKey"]
    iam.put_user_policy(UserName="ferryman", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    s3 = boto3.client("s3", aws_access_key_id=key["AccessKeyId"],
                      aws_secret_access_key=key["SecretAccessKey"], **kw)
    for bucket in sorted({o.split("/", 1)[0] for o in objects}):
        s3.create_bucket(Bucket=bucket)
    for path, hex_body in objects.items():
        bucket, name = path.split("/", 1)
        s3.put_object(Bucket=bucket, Key=name, Body=bytes.fromhex(hex_body))
    print(json.dumps([key["AccessKeyId"], key["SecretAccessKey"]]))
    """
)


@contextmanager
def moto_s3(tmp: Path, objects: dict[str, bytes]) -> Iterator[S3]:
    """A moto S3 server holding ``objects`` ({"bucket/key": bytes}), IAM auth enforced."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    python = str(moto_python())
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    argv = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with process(argv, port, tmp / "moto.log", env=env):
        setup = subprocess.run(
            [python, "-c", _S3_SETUP, endpoint],
            input=json.dumps({k: v.hex() for k, v in objects.items()}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert setup.returncode == 0, setup.stderr
        key_id, secret = json.loads(setup.stdout)
        yield S3(endpoint, key_id, secret)


@contextmanager
def fake_gcs(tmp: Path, objects: dict[str, bytes]) -> Iterator[str]:
    """fake-gcs-server (plain HTTP, in memory) holding ``objects`` ({"bucket/name":
    bytes}); yields its endpoint URL. It checks no credentials: put ``AuthProxy`` in
    front of it for that."""
    data = tmp / "gcs-data"
    for path, body in objects.items():
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_bytes(body)
    port = free_port()
    argv = [
        str(fake_gcs_binary()),
        "-backend=memory",
        "-scheme=http",
        "-host=127.0.0.1",
        f"-port={port}",
        f"-public-host=127.0.0.1:{port}",
        f"-external-url=http://127.0.0.1:{port}",
        f"-data={data}",
        "-log-level=warn",
    ]
    with process(argv, port, tmp / "fake-gcs.log"):
        yield f"http://127.0.0.1:{port}"


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>
    username: str
    password: str

    def env(self) -> dict[str, str]:
        return {"OCI_USERNAME": self.username, "OCI_PASSWORD": self.password}


def _bcrypt(password: str) -> str:
    """A bcrypt hash for the registry's htpasswd file (libcrypt through Python 3.11's
    ``crypt``, in a subprocess so its DeprecationWarning stays out of pytest)."""
    code = (
        "import crypt, sys; "
        "print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4)))"
    )
    out = subprocess.run(
        ["python3", "-W", "ignore", "-c", code, password],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.startswith("$2"), out
    return out


@contextmanager
def registry(tmp: Path) -> Iterator[Registry]:
    """The CNCF distribution registry on plain HTTP, in-memory storage, htpasswd auth."""
    port = free_port()
    user, password = "ferryman", "registry-pass-1"
    (tmp / "htpasswd").write_text(f"{user}:{_bcrypt(password)}\n")
    (tmp / "registry.yml").write_text(
        textwrap.dedent(
            f"""\
            version: 0.1
            log: {{level: warn}}
            storage: {{inmemory: {{}}}}
            http: {{addr: "127.0.0.1:{port}"}}
            auth: {{htpasswd: {{realm: ferryman, path: "{tmp / "htpasswd"}"}}}}
            """
        )
    )
    argv = [str(registry_binary()), "serve", str(tmp / "registry.yml")]
    with process(argv, port, tmp / "registry.log"):
        yield Registry(f"127.0.0.1:{port}", user, password)


def oras_push(reg: Registry, target: str, root: Path, files: list[str]) -> None:
    """Push ``files`` (paths relative to ``root``) as one OCI artifact, a layer each,
    titled by its relative path (``org.opencontainers.image.title``)."""
    import oras.client

    annotations = {f: {"org.opencontainers.image.title": f} for f in files}
    (root.parent / "annotations.json").write_text(json.dumps(annotations))
    client = oras.client.OrasClient(hostname=reg.host, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth(reg.username, reg.password)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        client.push(
            target=f"{reg.host}/{target}",
            files=files,
            annotation_file=str(root.parent / "annotations.json"),
            disable_path_validation=True,
            quiet=True,
        )
    finally:
        os.chdir(cwd)


class Proxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of a store, for the failures a healthy
    store never shows: ``truncate(method, path)`` true sends a response's headers with
    the full Content-Length, then ``keep`` (a fraction) of its body, then closes the
    connection (a server that dies mid-download; a client that resumes from where it was
    cut makes no progress with ``keep=0``), or with ``consistent`` a Content-Length (and
    no Content-Range) that matches the short body: a store that lies about the object;
    ``bearer`` set answers 401 to a request without ``Authorization: Bearer <bearer>``
    (fake-gcs-server checks no credentials). Every response carries
    ``Connection: close``, one request per connection."""

    def __init__(
        self,
        upstream: str,
        truncate: Callable[[str, str], bool] = lambda m, p: False,
        bearer: str | None = None,
        keep: float = 0.5,
        consistent: bool = False,
    ) -> None:
        self.upstream = urllib.parse.urlparse(upstream)
        self.keep = keep
        self.consistent = consistent
        self.truncate = truncate
        self.bearer = bearer
        self.truncated: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        if self.bearer is not None and h.headers.get("Authorization") != f"Bearer {self.bearer}":
            body = b'{"error": {"code": 401, "message": "invalid credentials"}}'
            h.send_response(401)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body)
            return
        length = int(h.headers.get("Content-Length") or 0)
        data = h.rfile.read(length) if length else None
        # The Host header passes unchanged: an S3 signature (SigV4) covers it.
        headers = {k: v for k, v in h.headers.items() if k.lower() != "connection"}
        conn = http.client.HTTPConnection(self.upstream.netloc, timeout=30)
        try:
            conn.request(h.command, h.path, body=data, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            out_headers = [
                (k, v)
                for k, v in resp.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length")
            ]
        finally:
            conn.close()
        cut = (
            h.command == "GET"
            and resp.status in (200, 206)
            and len(body) > 1
            and self.truncate(h.command, h.path)
        )
        sent = body[: int(len(body) * self.keep)] if cut else body
        if cut:
            self.truncated.append(h.path)
        h.send_response(resp.status)
        for k, v in out_headers:
            if not (cut and self.consistent and k.lower() == "content-range"):
                h.send_header(k, v)
        # A consistent cut announces the short length: a complete-looking response that
        # only a comparison with the object's listed size can catch.
        h.send_header("Content-Length", str(len(sent) if cut and self.consistent else len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(sent)
            h.wfile.flush()


class TokenServer:
    """An OAuth 2.0 token endpoint (RFC 7523 JWT bearer grant, what google-auth sends
    for a service-account key) on 127.0.0.1: it grants ``token`` to an assertion whose
    JWT header names key id ``key_id`` and refuses (400 invalid_grant, as Google does)
    any other key. It does not verify the RS256 signature: the key id stands for "the
    key Google knows"."""

    def __init__(self, key_id: str, token: str) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = urllib.parse.parse_qs(
                    self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                )
                assertion = form.get("assertion", [""])[0]
                head = assertion.split(".")[0]
                header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
                if header.get("kid") == key_id:
                    status, body = 200, {"access_token": token, "expires_in": 3600}
                else:
                    status, body = 400, {"error": "invalid_grant", "error_description": "bad key"}
                data = json.dumps({**body, "token_type": "Bearer"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                server.requests += 1

            def log_message(self, *args: object) -> None:
                pass

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def service_account_key(tmp: Path, key_id: str, token_uri: str) -> str:
    """A service-account JSON key (a fresh RSA key, openssl) whose token endpoint is
    ``token_uri``: the content a user puts in GOOGLE_SERVICE_ACCOUNT_JSON."""
    pem = tmp / f"{key_id}.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        stdout=open(pem, "wb"),  # noqa: SIM115
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "ferryman-test",
            "private_key_id": key_id,
            "private_key": pem.read_text(),
            "client_email": "model-reader@ferryman-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    )
