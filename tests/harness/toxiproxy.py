"""Toxiproxy v2 (github.com/Shopify/toxiproxy) as a real fault proxy between the operator
and its dependencies (the API server, Prometheus), for tests/e2e/test_faults.py.

Why a real TCP proxy: the faults that matter (a watch cut mid-stream, a write whose
connection resets, a link that silently drops everything) happen below HTTP, where no
fake client can reproduce what aiohttp and the kubernetes client really do. TLS to the
API server passes through untouched (the proxy only moves bytes; the API server's
certificate has IP SAN 127.0.0.1, valid for any port on that address).

The server is built from its Go module by ``hack/tools/build.sh toxiproxy`` (``make
toxiproxy-build``) into ``$FERRYMAN_CACHE/bin/toxiproxy-<version>/server``, and listens on
127.0.0.1 only: its HTTP API on a free port, each proxy on another. The wrapper below
speaks the REST API documented in Toxiproxy's README ("HTTP API"): ``POST /proxies``,
``POST /proxies/{name}`` (enable/disable), ``POST /proxies/{name}/toxics``,
``DELETE /proxies/{name}/toxics/{toxic}``, ``POST /reset``. Toxic attributes are in
milliseconds (latency, jitter, timeout), KB/s (bandwidth ``rate``) and bytes
(``limit_data``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.net import free_port

VERSIONS_ENV = Path(__file__).resolve().parents[2] / "hack" / "tools" / "versions.env"


def version() -> str:
    for line in VERSIONS_ENV.read_text().splitlines():
        if line.startswith("TOXIPROXY_VERSION="):
            return line.split("=", 1)[1].strip()
    raise LookupError(f"TOXIPROXY_VERSION not in {VERSIONS_ENV}")


def find_binary() -> Path:
    """The cached server binary; FileNotFoundError (a test failure, never a skip) when
    ``make toxiproxy-build`` has not run."""
    cache = Path(os.environ.get("FERRYMAN_CACHE", Path.home() / ".cache" / "ferryman"))
    path = cache / "bin" / f"toxiproxy-{version()}" / "server"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `make toxiproxy-build`")
    return path


class Proxy:
    """One named proxy: ``listen`` (127.0.0.1:port, what the client dials) forwarding to
    ``upstream``. Toxics are named ``<type>-<stream>`` unless named explicitly."""

    def __init__(self, server: ToxiproxyServer, name: str, listen_port: int) -> None:
        self.server, self.name, self.port = server, name, listen_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(
        self,
        kind: str,
        stream: str = "downstream",
        attributes: dict[str, int] | None = None,
        *,
        name: str | None = None,
        toxicity: float = 1.0,
    ) -> str:
        """Add a toxic of ``kind`` (latency, bandwidth, timeout, reset_peer, limit_data,
        slow_close, slicer) on ``stream`` ("downstream": server to client, "upstream":
        client to server). Returns its name. Raises urllib.error.HTTPError on refusal."""
        toxic = name or f"{kind}-{stream}"
        self.server.call(
            "POST",
            f"/proxies/{self.name}/toxics",
            {
                "name": toxic,
                "type": kind,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes or {},
            },
        )
        return toxic

    def remove(self, toxic: str) -> None:
        self.server.call("DELETE", f"/proxies/{self.name}/toxics/{toxic}")

    def clear(self) -> None:
        for toxic in self.server.call("GET", f"/proxies/{self.name}/toxics") or []:
            self.remove(toxic["name"])

    def enable(self, enabled: bool = True) -> None:
        """A disabled proxy closes its listener and every open connection: clients get
        "connection refused" until it is enabled again."""
        self.server.call("POST", f"/proxies/{self.name}", {"enabled": enabled})

    @contextlib.contextmanager
    def toxic(self, kind: str, stream: str = "downstream", **attributes: int) -> Iterator[str]:
        name = self.add(kind, stream, attributes)
        try:
            yield name
        finally:
            self.remove(name)


class ToxiproxyServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.binary = find_binary()
        self.api_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 20) -> ToxiproxyServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "toxiproxy.log", "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "-host", "127.0.0.1", "-port", str(self.api_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"toxiproxy exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                self.call("GET", "/version")
                return self
            time.sleep(0.05)
        raise TimeoutError(f"toxiproxy API not up after {timeout}s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "toxiproxy.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One REST call; the decoded JSON answer (None when empty). Raises
        urllib.error.HTTPError for a non-2xx answer, OSError when unreachable."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()

    def proxy(self, name: str, upstream: str) -> Proxy:
        """Create proxy ``name`` on a free 127.0.0.1 port forwarding to ``upstream``
        ("host:port")."""
        port = free_port()
        self.call(
            "POST",
            "/proxies",
            {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream, "enabled": True},
        )
        return Proxy(self, name, port)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self.call("POST", "/reset")
