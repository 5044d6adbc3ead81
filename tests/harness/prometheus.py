"""A real Prometheus server (Debian's package) for the analysis tests and the demo.

It listens on 127.0.0.1 on a free port, keeps its TSDB in a temporary directory, and
scrapes every second the exporters a test registers. Targets live in a file-based
service-discovery file that the fixture writes (static targets; Prometheus re-reads the
file on change), so tests can add their exporters without restarting it. ``stop()`` and
``start()`` keep the same port and data, so a test can take Prometheus away mid-rollout
and bring it back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from harness.net import free_port

SCRAPE_INTERVAL_S = 1


def find_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if not found:
        raise FileNotFoundError("prometheus not installed (run `make deps`)")
    return found


class PrometheusServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.binary = find_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.targets: dict[str, list[str]] = {}
        (workdir / "targets").mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        self._write_config()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            },
            "scrape_configs": [
                {
                    "job_name": "tests",
                    "file_sd_configs": [
                        {
                            "files": [str(self.workdir / "targets" / "*.json")],
                            "refresh_interval": "1s",
                        }
                    ],
                }
            ],
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))

    def start(self, timeout: float = 30) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 - kept open by Popen
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
                "--web.enable-lifecycle",
                "--query.lookback-delta=30s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_tail()}")
            if self._get("/-/ready", timeout=0.5)[0] == 200:
                return
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "prometheus.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def add_target(self, name: str, address: str) -> None:
        """Scrape ``address`` (host:port on 127.0.0.1) as target group ``name``."""
        assert address.startswith(("127.0.0.1:", "localhost:")), "loopback targets only"
        self.targets[name] = [address]
        path = self.workdir / "targets" / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [address], "labels": {"target": name}}]))
        tmp.rename(path)  # atomic: Prometheus never reads a half-written file

    def remove_target(self, name: str) -> None:
        self.targets.pop(name, None)
        (self.workdir / "targets" / f"{name}.json").unlink(missing_ok=True)

    def _get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query through the HTTP API; the vector's samples."""
        status, body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        if status != 200:
            raise RuntimeError(f"query {promql!r} failed: {status} {body}")
        data = json.loads(body)
        result: list[dict[str, Any]] = data["data"]["result"]
        return result
