"""Run a rendered pod's containers as local processes, and play the kubelet on kwok.

kwok never starts a container, so nothing on the local control plane proves that the pod
spec ferryman renders (``plan.serving`` + ``plan.initializer``) runs. This module runs
one container of a pod template as a process on this machine, as faithfully as a
process can stand for a container:

- the same ``command`` + ``args`` with the kubelet's ``$(VAR)`` expansion (``$$`` is a
  literal ``$``, an unknown variable is left as written), the same ``env`` (values,
  ``secretKeyRef``/``configMapKeyRef``) and ``envFrom`` (Secret and ConfigMap keys), read
  from ``sources`` given by the test or, when a ``cluster`` is given, from the cluster;
- ``python`` as the command is this interpreter (the image's Python stands for the
  test's virtualenv, which has ferryman installed);
- volumes become directories under the work directory, one per volume, shared by every
  container of the pod run with the same ``Pod`` (an ``emptyDir`` starts empty; a
  ``persistentVolumeClaim`` is the directory ``claims[claimName]`` the test gives);
  ``image_paths`` maps paths inside the image to local ones (the model server's script).
- **Path rewriting** (a process has no mount namespace): every occurrence of a mount
  path, of an ``image_paths`` key or of the ``terminationMessagePath`` (default
  ``/dev/termination-log``) in the command, the args and the env values is replaced by
  its local directory, when it stands as a whole path (not preceded by a path character,
  not followed by a letter, digit, ``.``, ``-`` or ``_``; so ``--dest=/mnt/models/x``
  becomes ``--dest=<work>/volumes/model-store/x``, a quoted path in a ``python -c``
  script is rewritten too, and ``/mnt/modelsX`` is left alone). A path the program computes
  itself, or a default it does not print, is not rewritten: what it writes there is lost
  (``Result`` then reports what the kubelet would: the logs' tail, or nothing).
- the termination message is computed with the kubelet's rule (``termination_message``):
  the ``terminationMessagePath`` file's content (at most 4,096 bytes); when it is empty,
  with ``terminationMessagePolicy: FallbackToLogsOnError`` and a non-zero exit code, the
  tail of the container's logs: the last 80 lines, at most 2,048 bytes (kubelet's
  ``kuberuntime`` constants ``MaxContainerTerminationMessageLength``,
  ``MaxContainerTerminationMessageLogLines``, ``...LogLength``; docs: "Customizing the
  termination message").

``Kubelet`` then writes what a kubelet would into a kwok pod's status (the status
subresource): a failed init container as ``initContainerStatuses[].state.terminated``
(``reason: Error``, the exit code and message; with ``restarts`` the kubelet's back-off,
``state.waiting.reason: CrashLoopBackOff`` with the failed run in ``lastState``), the
pod ``Pending`` and not Initialized; a successful one as ``Completed`` with the pod
``Running`` and Ready. kwok's own ``ferryman-pod-ready`` stage would make the pod Ready
after its delay whatever the test wrote (a delayed stage is not cancelled by a later
change, kwok 0.8's ``preprocess``), so the pods a test plays carry the annotation
``TEST_KUBELET`` (the Rollout's ``template.podAnnotations``), which that stage skips
(hack/cluster/stages/pod-ready.yaml); kwok's ``pod-start`` still assigns the pod IP.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.kube import Cluster

TERMINATION_PATH = "/dev/termination-log"
MAX_MESSAGE = 4096  # bytes of a termination-message file the kubelet keeps
MAX_LOG_LINES = 80  # FallbackToLogsOnError: the last lines of the logs ...
MAX_LOG_BYTES = 2048  # ... and at most this many bytes of them
TEST_KUBELET = "ferryman.dev/test-kubelet"

Obj = dict[str, Any]


def termination_message(file_text: bytes, logs: bytes, policy: str | None, exit_code: int) -> str:
    """The message the kubelet reports for a terminated container (module docstring):
    the file's content (first ``MAX_MESSAGE`` bytes) when not empty; else, with
    ``policy == "FallbackToLogsOnError"`` and a non-zero ``exit_code``, the last
    ``MAX_LOG_LINES`` lines of ``logs``, at most ``MAX_LOG_BYTES`` bytes (the end);
    else ""."""
    if file_text:
        return file_text[:MAX_MESSAGE].decode(errors="replace")
    if policy != "FallbackToLogsOnError" or exit_code == 0:
        return ""
    lines = logs.splitlines(keepends=True)[-MAX_LOG_LINES:]
    return b"".join(lines)[-MAX_LOG_BYTES:].decode(errors="replace")


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion of command, args and env values: ``$(NAME)``
    becomes the value when NAME is defined, else stays; ``$$`` is ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


def rewrite(text: str, paths: Mapping[str, Path]) -> str:
    """``text`` with each whole-path occurrence of a key of ``paths`` (longest first)
    replaced by its local path (module docstring, "Path rewriting")."""
    for inside in sorted(paths, key=len, reverse=True):
        pattern = r"(?<![\w./-])" + re.escape(inside.rstrip("/")) + r"(?![\w.-])"
        local = str(paths[inside]).replace("\\", "\\\\")
        text = re.sub(pattern, local, text)
    return text


@dataclass
class Result:
    """One container run to its end: ``exit_code``, the kubelet's ``message``
    (``termination_message``), the combined stdout+stderr ``logs``."""

    exit_code: int
    message: str
    logs: str


@dataclass
class Pod:
    """One pod template (``template``: a Deployment's ``spec.template``) run locally in
    ``workdir``: volumes under ``workdir/volumes``, one termination file per container
    under ``workdir/termination``. ``sources``: Secrets and ConfigMaps by name
    ({name: {key: value}}), read before the ``cluster`` (in ``namespace``);
    ``claims``: a local directory per PersistentVolumeClaim name; ``image_paths``: local
    stand-ins for paths inside the image; ``extra_env``: what the image itself would set
    (e.g. its CA bundle's ``SSL_CERT_FILE``), under the container's own env."""

    template: Obj
    workdir: Path
    sources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    cluster: Cluster | None = None
    namespace: str | None = None
    claims: Mapping[str, Path] = field(default_factory=dict)
    image_paths: Mapping[str, Path] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> Obj:
        return dict(self.template.get("spec") or {})

    def container(self, name: str) -> Obj:
        """The init or main container ``name``; KeyError when there is none."""
        for c in [*(self.spec.get("initContainers") or []), *(self.spec.get("containers") or [])]:
            if c.get("name") == name:
                return dict(c)
        raise KeyError(f"no container {name!r} in the pod template")

    def _volume_dir(self, name: str) -> Path:
        volume = next((v for v in self.spec.get("volumes") or [] if v.get("name") == name), None)
        if volume is None:
            raise KeyError(f"volume {name!r} is mounted but not declared")
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            return Path(self.claims[claim])
        if "emptyDir" in volume:
            path = self.workdir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            return path
        raise NotImplementedError(f"volume {name!r}: only emptyDir and PVCs are mapped")

    def _source(self, kind: str, name: str) -> Mapping[str, str]:
        if name in self.sources:
            return self.sources[name]
        if self.cluster is None or self.namespace is None:
            raise KeyError(f"{kind} {name!r}: neither given nor readable (no cluster)")
        import base64

        if kind == "Secret":
            obj: Any = self.cluster.core.read_namespaced_secret(name, self.namespace)
            return {k: base64.b64decode(v).decode() for k, v in (obj.data or {}).items()}
        obj = self.cluster.core.read_namespaced_config_map(name, self.namespace)
        return dict(obj.data or {})

    def termination_file(self, container: Obj) -> Path:
        path = self.workdir / "termination" / container["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def paths(self, container: Obj) -> dict[str, Path]:
        """Paths inside the container -> local paths (mounts, image paths, the
        termination-message file)."""
        out: dict[str, Path] = {k: Path(v) for k, v in self.image_paths.items()}
        for m in container.get("volumeMounts") or []:
            local = self._volume_dir(m["name"])
            if m.get("subPath"):
                local = local / m["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            out[m["mountPath"]] = local
        out[container.get("terminationMessagePath") or TERMINATION_PATH] = self.termination_file(
            container
        )
        return out

    def environment(self, container: Obj) -> dict[str, str]:
        """The container's environment as the kubelet builds it (envFrom first, then
        env, later entries winning, ``$(VAR)`` expanded against the earlier ones), over
        PATH and ``extra_env``; paths rewritten."""
        env: dict[str, str] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(self.extra_env)
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                values = self._source("Secret", source["secretRef"]["name"])
            else:
                values = self._source("ConfigMap", source["configMapRef"]["name"])
            env.update({prefix + k: v for k, v in values.items()})
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = expand(str(item["value"]), env)
            elif ref := (item.get("valueFrom") or {}).get("secretKeyRef"):
                env[item["name"]] = self._source("Secret", ref["name"])[ref["key"]]
            elif ref := (item.get("valueFrom") or {}).get("configMapKeyRef"):
                env[item["name"]] = self._source("ConfigMap", ref["name"])[ref["key"]]
        paths = self.paths(container)
        return {k: rewrite(v, paths) for k, v in env.items()}

    def argv(self, container: Obj, env: Mapping[str, str]) -> list[str]:
        """command + args, expanded and rewritten; ``python`` is this interpreter."""
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        if not container.get("command"):
            raise ValueError(f"container {container['name']}: no command (the image's entrypoint)")
        paths = self.paths(container)
        out = [rewrite(expand(str(w), env), paths) for w in words]
        if out[0] in ("python", "python3"):
            out[0] = sys.executable
        return out

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start container ``name`` (logs to ``workdir/logs/<name>``)."""
        container = self.container(name)
        env = self.environment(container)
        argv = self.argv(container, env)
        self.termination_file(container).write_bytes(b"")
        log_path = self.workdir / "logs" / name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            return subprocess.Popen(
                argv, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )

    def run(self, name: str, timeout: float = 60) -> Result:
        """Run container ``name`` to its end; its ``Result``."""
        container = self.container(name)
        proc = self.start(name)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        logs = (self.workdir / "logs" / name).read_bytes()
        message = termination_message(
            self.termination_file(container).read_bytes(),
            logs,
            container.get("terminationMessagePolicy"),
            code,
        )
        return Result(code, message, logs.decode(errors="replace"))

    def ready(self, name: str, host: str = "127.0.0.1", timeout: float = 2.0) -> int | None:
        """The HTTP status of container ``name``'s ``readinessProbe.httpGet`` on
        ``host`` (the port resolved by name from its ports), or None when nothing
        answers."""
        container = self.container(name)
        get = container["readinessProbe"]["httpGet"]
        port = get["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
        try:
            with urllib.request.urlopen(
                f"http://{host}:{port}{get.get('path', '/')}", timeout=timeout
            ) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return None


@contextmanager
def running(pod: Pod, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Container ``name`` running for the block, terminated afterwards."""
    proc = pod.start(name)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def describe(argv: list[str]) -> str:
    return shlex.join(argv)


# --- the kubelet on kwok -----------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def init_failed_status(pod: Obj, container: str, result: Result, restarts: bool) -> Obj:
    """The pod status a kubelet reports while init container ``container`` fails with
    ``result`` (module docstring)."""
    now = _now()
    terminated = {
        "exitCode": result.exit_code,
        "reason": "Error",
        "message": result.message,
        "startedAt": now,
        "finishedAt": now,
    }
    init_status: Obj = {
        "name": container,
        "image": next(c["image"] for c in pod["spec"]["initContainers"] if c["name"] == container),
        "ready": False,
        "restartCount": 1 if restarts else 0,
        "state": {"terminated": terminated},
    }
    if restarts:
        init_status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 10s restarting failed container={container}",
            }
        }
        init_status["lastState"] = {"terminated": terminated}
    not_init = f"containers with incomplete status: [{container}]"
    return {
        "phase": "Pending",
        "conditions": [
            {
                "type": "Initialized",
                "status": "False",
                "reason": "ContainersNotInitialized",
                "message": not_init,
                "lastTransitionTime": now,
            },
            {
                "type": "Ready",
                "status": "False",
                "reason": "ContainersNotReady",
                "message": "containers with unready status",
                "lastTransitionTime": now,
            },
            {
                "type": "ContainersReady",
                "status": "False",
                "reason": "ContainersNotReady",
                "message": "containers with unready status",
                "lastTransitionTime": now,
            },
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
        "initContainerStatuses": [init_status],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}},
            }
            for c in pod["spec"]["containers"]
        ],
    }


def started_status(pod: Obj) -> Obj:
    """The pod status once every init container Completed and the containers run Ready."""
    now = _now()
    return {
        "phase": "Running",
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "initContainerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "ready": True,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            }
            for c in pod["spec"].get("initContainers") or []
        ],
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ],
    }


def server_crashed_status(pod: Obj, container: str, result: Result) -> Obj:
    """The pod status a kubelet reports while main container ``container`` crash-loops
    after exiting with ``result``: init containers Completed, the pod Running and not
    Ready, the container waiting in ``CrashLoopBackOff`` with the failed run in
    ``lastState``."""
    status = started_status(pod)
    now = _now()
    for cond in status["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.update(status="False", reason="ContainersNotReady")
    for cs in status["containerStatuses"]:
        if cs["name"] == container:
            cs.update(
                ready=False,
                started=False,
                restartCount=1,
                state={
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 10s restarting failed container={container}",
                    }
                },
                lastState={
                    "terminated": {
                        "exitCode": result.exit_code,
                        "reason": "Error",
                        "message": result.message,
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            )
    return status


class Kubelet:
    """Plays the kubelet for the pods of ``namespace`` annotated ``TEST_KUBELET``: runs
    each new pod's init containers as processes (``Pod.run``, in ``workdir/<pod>``),
    then writes the status a kubelet would (``init_failed_status`` or
    ``started_status``; with ``main_grace`` > 0 the main container is run too when it
    has a command, and one that exits within that many seconds is reported as
    ``server_crashed_status``) through the status subresource, once kwok's pod-start stage
    gave the pod its IP (so no stage of kwok matches it afterwards). ``played``: the
    ``Result`` of each pod's failing init container, by pod name; ``errors``: what went
    wrong in the helper itself (a test asserts it is empty)."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        workdir: Path,
        *,
        restarts: bool = True,
        main_grace: float = 0.0,
        **pod_options: Any,
    ) -> None:
        self.cluster, self.namespace, self.workdir = cluster, namespace, workdir
        self.restarts = restarts
        self.main_grace = main_grace
        self._running: list[subprocess.Popen[bytes]] = []
        self.pod_options = pod_options
        self.played: dict[str, Result] = {}
        self.started: list[str] = []
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods: Any = self.cluster.core.list_namespaced_pod(self.namespace)
                for p in pods.items:
                    meta = p.metadata
                    if (
                        meta.name in self._seen
                        or TEST_KUBELET not in (meta.annotations or {})
                        or meta.deletion_timestamp is not None
                        or not (p.status and p.status.pod_ip)
                    ):
                        continue
                    self._seen.add(meta.name)
                    self._play(self.cluster.api.sanitize_for_serialization(p))
            except Exception as e:  # reported, never silent
                self.errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(0.1)

    def _play(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        local = Pod(
            template={"spec": pod["spec"]},
            workdir=Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir)),
            cluster=self.cluster,
            namespace=self.namespace,
            **self.pod_options,
        )
        for c in pod["spec"].get("initContainers") or []:
            result = local.run(c["name"])
            if result.exit_code != 0:
                self.played[name] = result
                self._write(name, init_failed_status(pod, c["name"], result, self.restarts))
                return
        main = pod["spec"]["containers"][0]
        if self.main_grace > 0 and main.get("command"):
            # The model server too: one that exits within main_grace seconds crashed.
            proc = local.start(main["name"])
            try:
                code = proc.wait(timeout=self.main_grace)
            except subprocess.TimeoutExpired:
                self._running.append(proc)
            else:
                logs = (local.workdir / "logs" / main["name"]).read_bytes()
                message = termination_message(
                    local.termination_file(main).read_bytes(),
                    logs,
                    main.get("terminationMessagePolicy"),
                    code,
                )
                result = Result(code, message, logs.decode(errors="replace"))
                self.played[name] = result
                self._write(name, server_crashed_status(pod, main["name"], result))
                return
        self._write(name, started_status(pod))
        self.started.append(name)

    def _write(self, name: str, status: Obj) -> None:
        # A JSON merge patch: the lists are replaced whole (a strategic merge would keep
        # kwok's ``running`` state beside the ``waiting`` one written here).
        self.cluster.core.patch_namespaced_pod_status(
            name,
            self.namespace,
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=10)
        for proc in self._running:
            proc.terminate()
            proc.wait(timeout=10)
        return self.errors


def wait_played(kubelet: Kubelet, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(kubelet.played) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(kubelet.played) >= count, f"played {kubelet.played}; errors {kubelet.errors}"
