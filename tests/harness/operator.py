"""The operator as a real subprocess (``python -m ferryman``), so tests can SIGKILL it at
any moment and start it again: the only honest way to test that all progress lives in
the cluster, never in process memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness.kube import Cluster
from harness.net import free_port


class OperatorProcess:
    _instances = 0

    def __init__(
        self,
        cluster: Cluster,
        *,
        namespaces: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        kubeconfig: Path | None = None,
    ) -> None:
        self.cluster = cluster
        # The operator's own credentials (the chart's ServiceAccount, harness.rbac);
        # None: the cluster's admin kubeconfig, as the tests themselves use.
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_dir = log_dir
        self.extra_env = env or {}
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # Several processes may share a test's log directory: each gets its own files.
        OperatorProcess._instances += 1
        self.instance = OperatorProcess._instances
        self.liveness_port = free_port()
        self.metrics_port = free_port()

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.instance}-{self.starts}.log"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def liveness_url(self) -> str:
        return f"http://127.0.0.1:{self.liveness_port}/healthz"

    def start(self, *, wait: bool = True, env: dict[str, str] | None = None) -> OperatorProcess:
        assert self.proc is None or self.proc.poll() is not None, "operator already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "ferryman", f"--liveness={self.liveness_url}", *self.args]
        for ns in self.namespaces:
            argv.append(f"--namespace={ns}")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={
                    **self.cluster.env,
                    **({"KUBECONFIG": str(self.kubeconfig)} if self.kubeconfig else {}),
                    "FERRYMAN_METRICS_PORT": str(self.metrics_port),
                    **self.extra_env,
                    **(env or {}),
                },
            )
        if wait:
            self.wait_live()
        return self

    def is_live(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def wait_live(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.is_live():
                return
            time.sleep(0.1)
        raise AssertionError(f"operator not live after {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final status write, like a node dying."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def restart(self) -> OperatorProcess:
        self.kill()
        return self.start()

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace")
            for p in sorted(self.log_dir.glob(f"operator-{self.instance}-*.log"))
        )

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
