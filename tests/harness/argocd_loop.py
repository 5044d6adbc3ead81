"""Real Argo CD against the local control plane, for the GitOps loop test (tests/gitops/).

tests/harness/argocd.py runs our Lua scripts through Argo CD's Lua package alone; this
module runs Argo CD itself, out of cluster, the way its own developers do (its Procfile):
Argo CD's multi-call binary (hack/argocd/build.sh, cached) as ``argocd-repo-server``,
``argocd-application-controller`` and ``argocd-server --insecure``, with Debian's
``redis-server`` as its cache and a ``git daemon`` serving a repository the test commits
to. Every component talks to 127.0.0.1; some Argo CD listeners (the controller's metrics
and health ports) bind every interface with no host flag, so the whole loop must run
inside a private network namespace (hack/netns.sh; hack/run-tests.sh does it).

No component creates Argo CD's own configuration out of cluster, so ``ArgoCD.start``
installs it: the Application and AppProject CRDs from the Argo CD module (copied next to
the binary by build.sh), the namespace ``argocd``, ``argocd-cm`` (our resource
customizations from charts/argocd/argocd-cm.yaml, nothing else changed from Argo CD's
defaults but the reconciliation period), ``argocd-secret`` (admin password, server key;
labelled ``app.kubernetes.io/part-of=argocd`` as Argo CD's settings watch requires),
``argocd-rbac-cm`` and the ``default`` AppProject. ``ARGOCD_FAKE_IN_CLUSTER=true`` makes
the in-cluster destination (https://kubernetes.default.svc) use the kubeconfig.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from harness.kube import Cluster, wait_for
from harness.net import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "hack" / "argocd" / "build.sh"
CUSTOMIZATIONS = ROOT / "charts" / "argocd" / "argocd-cm.yaml"
NAMESPACE = "argocd"
ADMIN_PASSWORD = "ferryman-test-admin"  # a throwaway cluster's local admin, not a secret
# How often the controller re-reads git and re-compares without an event (Argo CD's
# default is 3 minutes; tests refresh the Application after each commit as a webhook would).
RECONCILIATION = "5s"


def binary() -> Path:
    """The Argo CD binary (hack/argocd/build.sh builds it when missing: minutes when
    cold and needs the network, so `make test` builds it before entering the namespace;
    instant when cached). Raises AssertionError with the build log on failure."""
    done = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"hack/argocd/build.sh failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _established(crd: dict[str, Any] | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Process:
    """One server process with its log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        return self

    def check(self) -> None:
        """Raises RuntimeError (with its log tail) when the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return _log_tail(self.log, lines)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@dataclass
class GitServer:
    """A git repository served read-only by ``git daemon`` on 127.0.0.1 (git protocol).
    The test commits to the served repository directly (no push needed)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    daemon: Process | None = None

    @property
    def repo(self) -> Path:
        return self.workdir / "repos" / "ml"

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/ml"

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "ferryman tests",
            "GIT_AUTHOR_EMAIL": "tests@ferryman.invalid",
            "GIT_COMMITTER_NAME": "ferryman tests",
            "GIT_COMMITTER_EMAIL": "tests@ferryman.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.workdir),
        }
        done = subprocess.run(
            ["git", "-C", str(self.repo), *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def start(self) -> GitServer:
        self.repo.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.daemon = Process(
            "git-daemon",
            [
                "git",
                "daemon",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.workdir / 'repos'}",
                "--export-all",
                "--reuseaddr",
                "--informative-errors",
                str(self.workdir / "repos"),
            ],
            self.workdir / "git-daemon.log",
        ).start()
        wait_port(self.port, timeout=10)
        return self

    def commit(self, files: dict[str, list[dict[str, Any]]], message: str) -> str:
        """Replace the repository's content with ``files`` (path -> objects, written as
        multi-document YAML), commit, and return the commit's sha."""
        for old in self.repo.iterdir():
            if old.name != ".git":
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        for rel, objs in files.items():
            path = self.repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()


def argocd_config(bin_path: Path) -> list[dict[str, Any]]:
    """argocd-cm (our customizations), argocd-secret, argocd-rbac-cm and the default
    AppProject, as Argo CD's install manifests would create them (minus what an
    out-of-cluster run does not use)."""
    cm = yaml.safe_load(CUSTOMIZATIONS.read_text())
    cm["data"]["timeout.reconciliation"] = RECONCILIATION
    hashed = subprocess.run(
        [str(bin_path), "account", "bcrypt", "--password", ADMIN_PASSWORD],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ARGOCD_BINARY_NAME": "argocd"},
    ).stdout.strip()
    labels = {"app.kubernetes.io/part-of": "argocd"}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        cm,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": labels},
            "stringData": {
                "admin.password": hashed,
                "admin.passwordMtime": now,
                "server.secretkey": os.urandom(24).hex(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-rbac-cm", "namespace": NAMESPACE, "labels": labels},
            "data": {},
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": NAMESPACE},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]


@dataclass
class ArgoCD:
    """Redis, argocd-repo-server, argocd-application-controller and argocd-server
    (``--insecure``) on 127.0.0.1, against ``cluster``; the ``argocd`` CLI logged in as
    admin. ``start`` raises RuntimeError/TimeoutError with the failing component's log."""

    cluster: Cluster
    workdir: Path
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bin = binary()
        self.ports = {
            k: free_port()
            for k in ("redis", "repo", "repo-metrics", "ctl-metrics", "server", "server-metrics")
        }
        self.cli_config = self.workdir / "cli-config"
        for sub in ("tls", "ssh", "gpg", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.ports['server']}"

    def _env(self, name: str) -> dict[str, str]:
        env = self.cluster.env
        return {
            **env,
            # git-verify-wrapper.sh, which the repo-server runs, is beside the binary.
            "PATH": f"{self.bin.parent}{os.pathsep}{env['PATH']}",
            "ARGOCD_BINARY_NAME": name,
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_TLS_DATA_PATH": str(self.workdir / "tls"),
            "ARGOCD_SSH_DATA_PATH": str(self.workdir / "ssh"),
            "ARGOCD_GNUPGHOME": str(self.workdir / "gpg"),
            "ARGOCD_GPG_ENABLED": "false",
            "TMPDIR": str(self.workdir / "tmp"),
            "HOME": str(self.workdir),
            # One controller: its shard is 0 whatever the host is called.
            "HOSTNAME": "argocd-application-controller-0",
        }

    def _run(self, name: str, *args: str) -> Process:
        p = Process(
            name, [str(self.bin), *args], self.workdir / f"{name}.log", env=self._env(name)
        ).start()
        self.processes.append(p)
        return p

    def install(self) -> None:
        """CRDs, namespace and configuration (see the module docstring)."""
        crds = self.bin.parent / "crds"
        for name in ("application-crd.yaml", "appproject-crd.yaml"):
            self.cluster.kubectl("apply", "--server-side", "-f", str(crds / name))

        # Polled, not `kubectl wait`: that fails outright while a new CRD has no
        # status.conditions yet.
        def established() -> bool:
            return all(
                _established(self.cluster.get_json("crd", crd))
                for crd in ("applications.argoproj.io", "appprojects.argoproj.io")
            )

        wait_for(established, timeout=60, interval=0.2, message="Argo CD's CRDs Established")
        if self.cluster.get_json("namespace", NAMESPACE) is None:
            self.cluster.kubectl("create", "namespace", NAMESPACE)
        self.cluster.apply(argocd_config(self.bin))

    def start(self) -> ArgoCD:
        """Raises RuntimeError before starting anything outside a private network
        namespace (module docstring: some listeners bind every interface)."""
        # /proc/self/net/dev follows this process's namespace (/sys/class/net does not).
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
        interfaces = sorted(line.split(":")[0].strip() for line in lines)
        if interfaces != ["lo"]:
            raise RuntimeError(
                "Argo CD must run in a private network namespace (hack/netns.sh) with "
                f"loopback only; this one has {interfaces}"
            )
        redis = shutil.which("redis-server")
        if not redis:
            raise FileNotFoundError("redis-server not installed (run `make deps`)")
        self.install()
        p = self.ports
        rp = Process(
            "redis",
            [
                redis,
                "--bind",
                "127.0.0.1",
                "--port",
                str(p["redis"]),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            self.workdir / "redis.log",
        ).start()
        self.processes.append(rp)
        wait_port(p["redis"], timeout=15)
        redis_addr = f"127.0.0.1:{p['redis']}"
        common = ["--loglevel", "info", "--redis", redis_addr]
        repo = self._run(
            "argocd-repo-server",
            *common,
            "--address",
            "127.0.0.1",
            "--port",
            str(p["repo"]),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(p["repo-metrics"]),
        )
        self._wait(repo, p["repo"])
        repo_addr = f"127.0.0.1:{p['repo']}"
        self._run(
            "argocd-application-controller",
            *common,
            "--namespace",
            NAMESPACE,
            "--repo-server",
            repo_addr,
            "--metrics-port",
            str(p["ctl-metrics"]),
            "--status-processors",
            "4",
            "--operation-processors",
            "2",
        )
        server = self._run(
            "argocd-server",
            *common,
            "--namespace",
            NAMESPACE,
            "--insecure",
            "--address",
            "127.0.0.1",
            "--port",
            str(p["server"]),
            "--metrics-port",  # no address flag: all interfaces (inside the namespace)
            str(p["server-metrics"]),
            "--repo-server",
            repo_addr,
            "--dex-server",
            "http://127.0.0.1:1",  # no Dex: SSO is not used
        )
        self._wait(server, p["server"])
        wait_for(self._login, timeout=60, interval=1, message="argocd login")
        return self

    def _wait(self, proc: Process, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.check()
            try:
                wait_port(port, timeout=1)
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"{proc.name} not listening after {timeout}s:\n{proc.tail()}")

    def _login(self) -> bool:
        for proc in self.processes:
            proc.check()
        done = self.cli_raw(
            "login",
            self.server,
            "--plaintext",
            "--username",
            "admin",
            "--password",
            ADMIN_PASSWORD,
        )
        return done.returncode == 0

    def cli_raw(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The ``argocd`` CLI (the same binary) with the harness's own config file."""
        return subprocess.run(
            [str(self.bin), *args, "--config", str(self.cli_config)],
            capture_output=True,
            text=True,
            env=self._env("argocd"),
            timeout=timeout,
            check=False,
        )

    def cli(self, *args: str, timeout: float = 60) -> str:
        """As ``cli_raw``; raises AssertionError with stderr when the CLI fails."""
        done = self.cli_raw(*args, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"argocd {' '.join(args)} failed: {done.stderr}{done.stdout}")
        return done.stdout

    def check(self) -> None:
        for proc in self.processes:
            proc.check()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail(15)}" for p in self.processes)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    # Applications

    def create_app(
        self,
        name: str,
        repo_url: str,
        path: str,
        namespace: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """An Application of ``path`` in the repository, into ``namespace``, with
        automated sync (prune, self-heal); ``extra``: more of its spec (e.g.
        ``ignoreDifferences``, ``syncPolicy.syncOptions``), merged key by key."""
        spec: dict[str, Any] = {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": path},
            "destination": {
                "server": "https://kubernetes.default.svc",
                "namespace": namespace,
            },
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        }
        for key, value in (extra or {}).items():
            spec[key] = {**spec[key], **value} if isinstance(spec.get(key), dict) else value
        self.cluster.apply(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": spec,
            }
        )

    def app(self, name: str) -> dict[str, Any]:
        """The Application object as the API server holds it (controller-written status)."""
        obj = self.cluster.get_json("application.argoproj.io", name, NAMESPACE)
        assert obj is not None, f"Application {name} not found"
        return obj

    def tree(self, name: str) -> dict[str, dict[str, Any]]:
        """kind/name -> node of the Application's resource tree, as argocd-server serves
        it to the UI and the CLI (``GET /api/v1/applications/<name>/resource-tree``): each
        node's ``health`` ({status, message}) is computed by the controller with our
        health checks. (Argo CD 3 no longer persists resource health in the Application's
        status.resources.)"""
        config = yaml.safe_load(self.cli_config.read_text())
        token = config["users"][0]["auth-token"]
        req = urllib.request.Request(
            f"http://{self.server}/api/v1/applications/{name}/resource-tree",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            nodes = json.load(resp).get("nodes") or []
        return {f"{n['kind']}/{n['name']}": n for n in nodes}

    def refresh(self, name: str) -> None:
        """What a git webhook does: ask the controller to re-read git now."""
        self.cluster.kubectl(
            "annotate",
            "--overwrite",
            "-n",
            NAMESPACE,
            "application.argoproj.io",
            name,
            "argocd.argoproj.io/refresh=normal",
        )

    def delete_app(self, name: str) -> None:
        self.cluster.kubectl(
            "delete",
            "-n",
            NAMESPACE,
            "application.argoproj.io",
            name,
            "--ignore-not-found",
            "--wait=false",
        )


def summary(app: dict[str, Any]) -> dict[str, Any]:
    """What a test reads of an Application: sync status and revision, health, the
    operation state's phase and revision, the history's revisions, and each resource's
    (kind/name) sync status and health."""
    st = app.get("status") or {}
    op = st.get("operationState") or {}
    return {
        "sync": (st.get("sync") or {}).get("status"),
        "revision": (st.get("sync") or {}).get("revision"),
        "health": (st.get("health") or {}).get("status"),
        "operation": op.get("phase"),
        "operation_revision": ((op.get("syncResult") or {}).get("revision")),
        "history": [h.get("revision") for h in st.get("history") or []],
        "resources": {
            f"{r['kind']}/{r['name']}": (r.get("status"), (r.get("health") or {}).get("status"))
            for r in st.get("resources") or []
        },
    }


def dump(app: dict[str, Any]) -> str:
    return json.dumps(summary(app), indent=1)
