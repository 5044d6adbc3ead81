#!/usr/bin/env python3
"""The local Kubernetes control plane: ferryman's embedded default for tests, the demo and
benchmarks.

There is no Docker engine on our machines, so kind cannot run; instead this module runs
the real components as plain processes, all bound to 127.0.0.1:

    etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler, kwok

kwok plays the kubelet: it marks one fake Node Ready and moves scheduled Pods through
the stages in ``stages/`` (start, Ready after a delay, unready on demand). The Gateway
API (standard channel) and Istio CRDs are applied from their Go modules with
server-side apply. Binaries come from ``build.sh`` (cached by version outside the repo).

Why hand-written flags rather than ``kwokctl --runtime binary``: kwokctl downloads its
own binaries unless every path is configured, manages its own work directory layout and
adds default stages we would have to override anyway (readiness delay, the never-ready
sentinel, unready on demand). Five processes with explicit flags are easier to read,
to bind to loopback, and to recover after a crash.

Stdlib only (plus the ``openssl`` CLI for certificates), so ``make up`` works before any
virtualenv exists. Usable as a CLI (``up``, ``down``, ``status``, ``env``) and from
Python (``up()``, ``down()``, ``is_up()``); the pytest plugin in ``tests/`` imports it.

Recovery: every process we start has the work directory in its command line, so
``down`` finds and stops them by scanning /proc even when pid files are stale or gone.
``up`` reuses a cluster that is fully up and healthy; if any component died (``kill -9``
of the apiserver, a crashed session) it stops the rest, wipes the state and starts
clean. Cluster state is disposable: tests create what they need.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTEXT = "ferryman-local"
NODE_NAME = "kwok-node-0"
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
UNREADY_ANNOTATION = "ferryman.dev/test-unready"
NEVER_READY_MARKER = "never-ready"

# Components in start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def read_versions(path: Path = HERE / "versions.env") -> dict[str, str]:
    """Parse the shell-style pinned versions file shared with build.sh."""
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("FERRYMAN_CACHE", Path.home() / ".cache" / "ferryman"))


@dataclass(frozen=True)
class Ports:
    """Fixed loopback ports, away from the usual defaults so a developer's own cluster
    (6443, 2379, ...) is never touched. FERRYMAN_CLUSTER_PORT moves the whole block."""

    base: int = int(os.environ.get("FERRYMAN_CLUSTER_PORT", "16443"))

    @property
    def apiserver(self) -> int:
        return self.base

    @property
    def etcd(self) -> int:
        return self.base + 1

    @property
    def etcd_peer(self) -> int:
        return self.base + 2

    @property
    def controller_manager(self) -> int:
        return self.base + 3

    @property
    def scheduler(self) -> int:
        return self.base + 4

    def all(self) -> dict[str, int]:
        return {
            "kube-apiserver": self.apiserver,
            "etcd": self.etcd,
            "etcd-peer": self.etcd_peer,
            "kube-controller-manager": self.controller_manager,
            "kube-scheduler": self.scheduler,
        }


@dataclass(frozen=True)
class Layout:
    """Where everything lives. The work directory is outside the repository."""

    workdir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("FERRYMAN_CLUSTER_DIR", cache_dir() / "cluster")
        ).resolve()
    )
    ports: Ports = field(default_factory=Ports)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def pids(self) -> Path:
        return self.workdir / "pids"

    @property
    def audit_log(self) -> Path:
        """JSON lines, one per request of the operator's ServiceAccount (see AUDIT_POLICY)."""
        return self.logs / "audit.log"

    @property
    def audit_policy(self) -> Path:
        return self.workdir / "audit-policy.yaml"

    @property
    def etcd_data(self) -> Path:
        return self.workdir / "etcd-data"

    @property
    def kwok_dir(self) -> Path:
        return self.workdir / "kwok"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path
    helm: Path

    @classmethod
    def from_cache(cls, versions: dict[str, str] | None = None) -> Binaries:
        v = versions or read_versions()
        bins = cache_dir() / "bin"
        k8s = bins / f"kubernetes-{v['KUBERNETES_VERSION']}"
        return cls(
            kube_apiserver=k8s / "kube-apiserver",
            kube_controller_manager=k8s / "kube-controller-manager",
            kube_scheduler=k8s / "kube-scheduler",
            kubectl=k8s / "kubectl",
            etcd=bins / f"etcd-{v['ETCD_VERSION']}" / "etcd",
            kwok=bins / f"kwok-{v['KWOK_VERSION']}" / "kwok",
            helm=bins / f"helm-{v['HELM_VERSION']}" / "helm",
        )

    def missing(self) -> list[Path]:
        return [p for p in vars(self).values() if not os.access(p, os.X_OK)]

    def bin_dirs(self) -> list[Path]:
        """Directories to put on PATH so `kubectl` and `helm` are the matching ones."""
        return sorted({self.kubectl.parent, self.helm.parent, self.etcd.parent, self.kwok.parent})


def log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------
# Certificates and kubeconfig


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ec_key(name: str, pki: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki)


def _signed_cert(name: str, subject: str, extensions: str, pki: Path) -> None:
    _ec_key(name, pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    (pki / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def generate_pki(layout: Layout) -> None:
    """A CA, the apiserver's serving cert (loopback and in-cluster names), an admin
    client cert in system:masters, and the service-account signing key pair."""
    pki = layout.pki
    if (pki / "admin.crt").exists() and (pki / "sa.pub").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _ec_key("ca", pki)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=ferryman-local-ca",
        "-days",
        "3650",
        "-sha256",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    sans = ",".join(
        [
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "IP:127.0.0.1",
            "IP:10.96.0.1",
        ]
    )
    _signed_cert(
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n",
        pki,
    )
    _signed_cert(
        "admin",
        "/O=system:masters/CN=ferryman-admin",
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        pki,
    )
    _ec_key("sa", pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(layout: Layout) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((layout.pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": layout.server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": f"{CONTEXT}-admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": f"{CONTEXT}-admin", "namespace": "default"},
            }
        ],
        "current-context": CONTEXT,
    }
    # JSON is valid YAML; every client reads it.
    layout.kubeconfig.write_text(json.dumps(config, indent=2))
    layout.kubeconfig.chmod(0o600)


# ---------------------------------------------------------------------------------------
# Processes


def _pid_cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """True while any thread of the process still runs. The thread-group leader of a
    killed Go program turns zombie while its other threads are still exiting and still
    hold the shared file descriptors (the listening sockets), so the leader alone is
    not enough to say the process is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


def our_processes(layout: Layout) -> dict[int, str]:
    """Every live process whose command line mentions our work directory: the reliable
    way to find what we started, whatever happened to the pid files."""
    # Every component has a path inside the work directory in its arguments; the trailing
    # separator keeps /x/cluster from matching the processes of /x/cluster2.
    marker = str(layout.workdir) + os.sep
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        cmd = _pid_cmdline(int(entry.name))
        ours = marker in cmd and Path(cmd.split(" ", 1)[0]).name in COMPONENTS
        if ours and _alive(int(entry.name)):
            found[int(entry.name)] = cmd
    return found


def component_pids(layout: Layout) -> dict[str, int | None]:
    """The live pid of each component, or None."""
    result: dict[str, int | None] = dict.fromkeys(COMPONENTS)
    for pid, cmd in our_processes(layout).items():
        name = Path(cmd.split(" ", 1)[0]).name
        if name in result:
            result[name] = pid
    return result


def _start(
    name: str, argv: Sequence[str], layout: Layout, env: dict[str, str] | None = None
) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    with open(layout.logs / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=layout.workdir,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    (layout.pids / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(
    what: str,
    check: Callable[[], object],
    timeout: float,
    pid: int | None = None,
    layout: Layout | None = None,
    name: str = "",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _alive(pid):
            tail = ""
            if layout is not None and name:
                lines = (layout.logs / f"{name}.log").read_text(errors="replace").splitlines()
                tail = "\n".join(lines[-25:])
            raise RuntimeError(f"{name or what} exited while waiting for {what}:\n{tail}")
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _ssl_context(layout: Layout) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return ctx


def _get(layout: Layout, path: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(
            layout.server + path, context=_ssl_context(layout), timeout=timeout
        ) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def apiserver_ready(layout: Layout) -> bool:
    return _get(layout, "/readyz")[0] == 200


def node_ready(layout: Layout) -> bool:
    status, body = _get(layout, f"/api/v1/nodes/{NODE_NAME}")
    if status != 200:
        return False
    conditions = json.loads(body).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def kubectl(
    layout: Layout, *args: str, binaries: Binaries | None = None, input: str | None = None
) -> str:
    bins = binaries or Binaries.from_cache()
    proc = subprocess.run(
        [str(bins.kubectl), f"--kubeconfig={layout.kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def crds_established(layout: Layout, binaries: Binaries | None = None) -> bool:
    """Whether every CRD has the condition Established=True. Read with ``kubectl get``:
    ``kubectl wait --for=condition=Established`` fails at once with "status.conditions
    accessor error: <nil>" on a CRD whose conditions are not written yet."""
    try:
        items = json.loads(kubectl(layout, "get", "crd", "-o", "json", binaries=binaries))["items"]
    except RuntimeError:
        return False
    return all(
        any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (i.get("status") or {}).get("conditions") or []
        )
        for i in items
    )


# ---------------------------------------------------------------------------------------
# Configuration of each component


def _etcd_argv(b: Binaries, layout: Layout) -> list[str]:
    p = layout.ports
    return [
        str(b.etcd),
        "--name=ferryman",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls=http://127.0.0.1:{p.etcd}",
        f"--advertise-client-urls=http://127.0.0.1:{p.etcd}",
        f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
        f"--initial-cluster=ferryman=http://127.0.0.1:{p.etcd_peer}",
        "--log-level=warn",
        # Test state is disposable: skip fsync, it dominates latency on small disks.
        "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296",
    ]


# The operator's identity in tests and in the chart's default install: every
# ServiceAccount of this namespace. The RBAC-minimality test reads which (verb, group,
# resource) it used from this log; Metadata level keeps no bodies, and the
# microsecond timestamps serve the benchmarks.
OPERATOR_NAMESPACE = "ferryman-system"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:{OPERATOR_NAMESPACE}"]
  - level: None
"""


def _apiserver_argv(b: Binaries, layout: Layout) -> list[str]:
    pki = layout.pki
    layout.audit_policy.write_text(AUDIT_POLICY)
    return [
        str(b.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{layout.ports.etcd}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.ports.apiserver}",
        # The node and the apiserver are both 127.0.0.1. Loopback is not a valid
        # endpoint address, so the `kubernetes` Service gets no endpoints at all.
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--profiling=false",
        "--event-ttl=1h",
        "--max-requests-inflight=800",
        "--max-mutating-requests-inflight=400",
        f"--cert-dir={pki}",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json",
        "--audit-log-maxsize=0",
        "--v=1",
    ]


def _controller_manager_argv(b: Binaries, layout: Layout) -> list[str]:
    pki, kc = layout.pki, layout.kubeconfig
    return [
        str(b.kube_controller_manager),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.ports.controller_manager}",
        "--leader-elect=false",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        # kwok hands out pod IPs from its own /16; a small per-node podCIDR from the
        # node IPAM controller would only confuse it.
        "--allocate-node-cidrs=false",
        # Hundreds of pods per Deployment in the scale tests: don't throttle at 20 qps.
        "--kube-api-qps=300",
        "--kube-api-burst=600",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--concurrent-gc-syncs=30",
        # The HPA controller looks at each HPA every second (default 15 s), so
        # tests/e2e/test_autoscaling.py sees a moved minReplicas/maxReplicas applied
        # through the scale subresource at once. Clamping a target into [min, max] needs
        # no metrics API and skips the stabilization windows (they only smooth
        # metric-based recommendations).
        "--horizontal-pod-autoscaler-sync-period=1s",
        "--v=1",
    ]


def _scheduler_argv(b: Binaries, layout: Layout) -> list[str]:
    config = layout.workdir / "scheduler.yaml"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {
                    "kubeconfig": str(layout.kubeconfig),
                    "qps": 300,
                    "burst": 600,
                },
                "leaderElection": {"leaderElect": False},
            }
        )
    )
    kc = layout.kubeconfig
    return [
        str(b.kube_scheduler),
        f"--config={config}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.ports.scheduler}",
        "--v=1",
    ]


def ready_delay_ms() -> int:
    """How long a started pod takes to become Ready. Never 0: tests must be able to see
    that readiness takes time. FERRYMAN_POD_READY_DELAY_MS sets it (default 1000)."""
    return max(50, int(os.environ.get("FERRYMAN_POD_READY_DELAY_MS", "1000")))


def module_dir(module: str, version: str) -> Path:
    gomodcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(gomodcache) / f"{module}@{version}"
    if not path.is_dir():
        subprocess.run(
            ["go", "mod", "download", f"{module}@{version}"],
            check=True,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
            cwd=tempfile.gettempdir(),
        )
    return path


def write_kwok_config(layout: Layout, versions: dict[str, str]) -> list[Path]:
    """kwok's configuration and stages: node stages and pod complete/delete straight from
    the kwok module, ferryman's own pod start/ready/unready stages from stages/."""
    layout.kwok_dir.mkdir(parents=True, exist_ok=True)
    kwok_src = module_dir("sigs.k8s.io/kwok", versions["KWOK_VERSION"]) / "kustomize" / "stage"
    upstream = [
        kwok_src / "node" / "fast" / "node-initialize.yaml",
        kwok_src / "node" / "heartbeat" / "node-heartbeat.yaml",
        kwok_src / "pod" / "fast" / "pod-complete.yaml",
        kwok_src / "pod" / "fast" / "pod-delete.yaml",
    ]
    delay = ready_delay_ms()
    docs = [
        json.dumps(
            {
                "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                "kind": "KwokConfiguration",
                "options": {"podPlayStageParallelism": 16, "nodePlayStageParallelism": 2},
            }
        )
    ]
    docs += [p.read_text() for p in upstream]
    for stage in sorted((HERE / "stages").glob("*.yaml")):
        docs.append(
            stage.read_text()
            .replace("@READY_DELAY_MS@", str(delay))
            .replace("@READY_JITTER_MS@", str(int(delay * 1.5)))
        )
    config = layout.kwok_dir / "kwok.yaml"
    config.write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    return [config]


def _kwok_argv(b: Binaries, layout: Layout, configs: list[Path]) -> list[str]:
    argv = [
        str(b.kwok),
        f"--kubeconfig={layout.kubeconfig}",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-ip=127.0.0.1",
        f"--cidr={POD_CIDR}",
    ]
    for c in configs:
        argv.append(f"--config={c}")
    return argv


def node_manifest() -> dict[str, object]:
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": "10000", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
        "status": {
            "allocatable": capacity,
            "capacity": capacity,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": NODE_NAME},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


def crd_files(versions: dict[str, str]) -> list[Path]:
    gw = module_dir("sigs.k8s.io/gateway-api", versions["GATEWAY_API_VERSION"])
    # Only the CRDs of the standard channel (mirror `percent` is there); not the
    # bundled admission policy, and never the experimental channel next to it.
    files = sorted((gw / "config" / "crd" / "standard").glob("gateway.networking.k8s.io_*.yaml"))
    istio = module_dir("istio.io/api", versions["ISTIO_API_VERSION"])
    files.append(istio / "kubernetes" / "customresourcedefinitions.gen.yaml")
    missing = [f for f in files if not f.is_file()]
    if missing or len(files) < 2:
        raise FileNotFoundError(f"CRD sources not found: {missing or files}")
    return files


# ---------------------------------------------------------------------------------------
# up / down


def is_up(layout: Layout | None = None) -> bool:
    layout = layout or Layout()
    pids = component_pids(layout)
    return (
        all(pids.values())
        and layout.kubeconfig.exists()
        and apiserver_ready(layout)
        and node_ready(layout)
    )


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _stop(pid: int, grace: float) -> None:
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)


def down(layout: Layout | None = None, quiet: bool = False) -> None:
    """Stop every process of this cluster (pid files or not) and free its ports.

    Components stop in reverse start order: an apiserver whose etcd is already gone
    hangs in its graceful shutdown, while stopped before etcd it exits in about a second.
    """
    layout = layout or Layout()
    procs = our_processes(layout)
    rank = {name: i for i, name in enumerate(COMPONENTS)}
    for pid in sorted(procs, key=lambda p: -rank.get(Path(procs[p].split(" ", 1)[0]).name, 99)):
        _stop(pid, grace=8)
    # Sockets close once the last thread of each process is gone; wait for that too, so
    # that `down` returning means the ports are free.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_port_open(p) for p in layout.ports.all().values()):
        time.sleep(0.1)
    if layout.pids.exists():
        for f in layout.pids.glob("*.pid"):
            f.unlink()
    if not quiet:
        log(f"down: stopped {len(procs)} process(es)" if procs else "down: nothing was running")


def up(layout: Layout | None = None, binaries: Binaries | None = None) -> Layout:
    """Bring the cluster up (or reuse a healthy one) and return its layout."""
    layout = layout or Layout()
    started = time.monotonic()
    versions = read_versions()
    b = binaries or Binaries.from_cache(versions)
    if missing := b.missing():
        raise FileNotFoundError(
            "cluster binaries missing (run hack/cluster/build.sh or `make cluster-build`): "
            + ", ".join(str(m) for m in missing)
        )
    if is_up(layout):
        log(f"up: already running ({layout.server}), kubeconfig {layout.kubeconfig}")
        return layout

    # Anything partial (a dead component, stale pids, a leftover data dir) is cleared.
    down(layout, quiet=True)
    busy = [f"{n}:{p}" for n, p in layout.ports.all().items() if _port_open(p)]
    if busy:
        raise RuntimeError(
            f"ports in use by another program: {', '.join(busy)} "
            "(set FERRYMAN_CLUSTER_PORT to move the block)"
        )
    for sub in (layout.etcd_data, layout.kwok_dir, layout.pids):
        if sub.exists():
            subprocess.run(["rm", "-rf", str(sub)], check=True)
    layout.workdir.mkdir(parents=True, exist_ok=True)
    for f in layout.logs.glob("*.log") if layout.logs.exists() else []:
        f.unlink()
    generate_pki(layout)
    write_kubeconfig(layout)

    pid = _start("etcd", _etcd_argv(b, layout), layout)
    _wait("etcd", lambda: _port_open(layout.ports.etcd), 30, pid, layout, "etcd")
    pid = _start("kube-apiserver", _apiserver_argv(b, layout), layout)
    _wait(
        "kube-apiserver /readyz", lambda: apiserver_ready(layout), 90, pid, layout, "kube-apiserver"
    )
    log(f"up: apiserver ready after {time.monotonic() - started:.1f}s")

    _start("kube-controller-manager", _controller_manager_argv(b, layout), layout)
    _start("kube-scheduler", _scheduler_argv(b, layout), layout)
    kwok_env = {"KWOK_WORKDIR": str(layout.kwok_dir)}
    _start("kwok", _kwok_argv(b, layout, write_kwok_config(layout, versions)), layout, kwok_env)

    kubectl(layout, "apply", "-f", "-", binaries=b, input=json.dumps(node_manifest()))
    crds = crd_files(versions)
    args = ["apply", "--server-side", "--field-manager=ferryman-local-cluster"]
    for f in crds:
        args += ["-f", str(f)]
    kubectl(layout, *args, binaries=b)
    _wait(f"node {NODE_NAME} Ready", lambda: node_ready(layout), 60)
    _wait("CRDs Established", lambda: crds_established(layout, b), 60)
    # The ServiceAccount controller must be running before pods can be created.
    _wait(
        "default ServiceAccount",
        lambda: _get(layout, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        60,
    )
    pids = component_pids(layout)
    if dead := [n for n, p in pids.items() if p is None]:
        raise RuntimeError(f"components exited during start: {dead}; logs in {layout.logs}")
    log(
        f"up: cluster ready in {time.monotonic() - started:.1f}s; "
        f"export KUBECONFIG={layout.kubeconfig}"
    )
    return layout


def status(layout: Layout | None = None) -> int:
    layout = layout or Layout()
    pids = component_pids(layout)
    for name, pid in pids.items():
        print(f"{name:<24} {'running pid ' + str(pid) if pid else 'stopped'}")
    ready = bool(pids["kube-apiserver"]) and apiserver_ready(layout)
    print(f"{'apiserver /readyz':<24} {'ok' if ready else 'not ready'}")
    print(f"{'node ' + NODE_NAME:<24} {'Ready' if ready and node_ready(layout) else 'not Ready'}")
    print(f"{'kubeconfig':<24} {layout.kubeconfig}")
    return 0 if all(pids.values()) and ready else 1


def env_lines(layout: Layout | None = None) -> Iterator[str]:
    layout = layout or Layout()
    b = Binaries.from_cache()
    yield f"export KUBECONFIG={layout.kubeconfig}"
    yield f"export PATH={':'.join(str(d) for d in b.bin_dirs())}:$PATH"


# ---------------------------------------------------------------------------------------
# Faults for tests (tests/e2e/test_faults.py): restart etcd, compact its history, and run
# a second API server on the same etcd that a test may restart without disturbing the
# tests that share the first one (as one replica of an HA control plane is upgraded).


def _etcd_call(layout: Layout, path: str, body: dict[str, object]) -> dict[str, object]:
    """One request to etcd's JSON gateway (the gRPC-gateway etcd serves on its client URL,
    https://etcd.io/docs/v3.6/dev-guide/api_grpc_gateway/)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{layout.ports.etcd}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, object] = json.loads(resp.read())
        return result


def etcd_revision(layout: Layout | None = None) -> int:
    """etcd's current revision (every resourceVersion the API server hands out is one)."""
    layout = layout or Layout()
    header = _etcd_call(layout, "/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
    return int(header["header"]["revision"])  # type: ignore[index,call-overload]


def compact_etcd(layout: Layout | None = None) -> int:
    """Compact etcd's history up to its current revision (physically), as the API
    server's periodic compaction does (``--etcd-compaction-interval``, 5 min by default):
    any watch that resumes from an older resourceVersion gets 410 Gone from etcd.
    Returns the revision compacted to."""
    layout = layout or Layout()
    revision = etcd_revision(layout)
    _etcd_call(layout, "/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


def restart_etcd(layout: Layout | None = None, down_s: float = 0.0) -> float:
    """Stop etcd (SIGTERM, data kept), stay down ``down_s`` seconds, start it with the
    same arguments and wait for its port. Returns the seconds it was unreachable."""
    layout = layout or Layout()
    pid = component_pids(layout)["etcd"]
    if pid is None:
        raise RuntimeError("etcd is not running")
    argv = _pid_cmdline(pid).split()
    started = time.monotonic()
    _stop(pid, grace=8)
    time.sleep(down_s)
    new = _start("etcd", argv, layout)
    _wait("etcd", lambda: _port_open(layout.ports.etcd), 30, new, layout, "etcd")
    return time.monotonic() - started


@dataclass
class ApiServerReplica:
    """A second kube-apiserver on ``port`` sharing the cluster's etcd, certificates and
    flags (its own audit log and log file). The operator under test talks to it; a test
    restarts it (``restart()``) while every other client keeps the first one."""

    port: int
    layout: Layout = field(default_factory=Layout)
    pid: int | None = None

    @property
    def name(self) -> str:
        return f"kube-apiserver-{self.port}"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        out = []
        for arg in _apiserver_argv(Binaries.from_cache(), self.layout):
            if arg.startswith("--secure-port="):
                arg = f"--secure-port={self.port}"
            elif arg.startswith("--audit-log-path="):
                arg = f"--audit-log-path={self.layout.logs / (self.name + '-audit.log')}"
            out.append(arg)
        return out

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                self.server + "/readyz", context=_ssl_context(self.layout), timeout=2
            ) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 120) -> float:
        """Start it and wait for /readyz; returns the seconds that took."""
        started = time.monotonic()
        self.pid = _start(self.name, self.argv(), self.layout)
        _wait(f"{self.name} /readyz", self.ready, timeout, self.pid, self.layout, self.name)
        return time.monotonic() - started

    def stop(self, grace: float = 8) -> None:
        if self.pid is not None:
            _stop(self.pid, grace)
            self.pid = None

    def restart(self, down_s: float = 0.0) -> float:
        """Stop (SIGTERM), stay down ``down_s`` seconds, start again and wait until
        ready. Returns the seconds it was unavailable."""
        started = time.monotonic()
        self.stop()
        time.sleep(down_s)
        self.start()
        return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "env", "kubeconfig"])
    args = parser.parse_args(argv)
    if args.command == "up":
        up()
    elif args.command == "down":
        down()
    elif args.command == "status":
        return status()
    elif args.command == "env":
        print("\n".join(env_lines()))
    elif args.command == "kubeconfig":
        print(Layout().kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
