"""A real MLflow tracking server and a real DVC project, for the MLflow import tests.

- ``tracking_server``: ``mlflow server`` (PyPI ``mlflow``, pinned in hack/tools/
  versions.env) on 127.0.0.1 with a sqlite backend store and a file artifact store
  (``--artifacts-destination``: the server serves the artifacts itself, locations are
  ``mlflow-artifacts:/<experiment>/<run>/artifacts/...``), one worker.
- ``dvc_project``: a Git repository with ``dvc init`` and ``dvc add`` of a data file,
  committed; its ``.dvc`` file holds the md5 DVC computed.
- ``train``: a script run by the tool virtualenv's Python, as a training job would: it
  logs runs (params, metrics, the Git commit tag, a dataset input, DVC tags, the model's
  files) and registers versions and an alias through MLflow's own client.

Both tools live in ``$FERRYMAN_CACHE/venv/mlflow-<v>`` (``hack/tools/build.sh mlflow``,
``make mlflow-build``); a missing one is a FileNotFoundError, a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.net import free_port
from harness.stores import built, cache, version


def venv() -> Path:
    return built(cache() / "venv" / f"mlflow-{version('MLFLOW_VERSION')}")


def tool(name: str) -> str:
    return str(built(venv() / "bin" / name))


def tool_env() -> dict[str, str]:
    # No telemetry, no version check, nothing but loopback.
    return {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "ferryman-test",
        "GIT_AUTHOR_EMAIL": "test@ferryman.invalid",
        "GIT_COMMITTER_NAME": "ferryman-test",
        "GIT_COMMITTER_EMAIL": "test@ferryman.invalid",
    }


START_TIMEOUT = 240.0  # seconds: a cold start imports and byte-compiles mlflow's server


@dataclass
class TrackingServer:
    uri: str  # http://127.0.0.1:<port>
    artifacts: Path  # the file artifact store: mlflow-artifacts:/<x> is artifacts/<x>
    proc: subprocess.Popen[bytes]
    log: Path

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until ``/health`` answers; AssertionError (with the log) after ``timeout``
        seconds or when the server exited."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"mlflow server did not start:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.2)


@contextmanager
def tracking_server(tmp: Path, artifacts: Path) -> Iterator[TrackingServer]:
    """The server, its state in ``tmp``, its file artifact store ``artifacts``, started
    and yielded at once (it takes a while: start other work, then ``wait_ready``).
    Stopped with its process group (``mlflow server`` runs uvicorn as a child)."""
    port = free_port()
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        tool("mlflow"),
        "server",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--backend-store-uri=sqlite:///{tmp / 'mlflow.db'}",
        f"--artifacts-destination={artifacts}",
        "--workers=1",
    ]
    log = tmp / "mlflow-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=tool_env(),
            start_new_session=True,
        )
    try:
        yield TrackingServer(f"http://127.0.0.1:{port}", artifacts, proc, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@dataclass
class DvcProject:
    repo: Path
    rev: str
    path: str  # the data's path in the project
    md5: str  # what DVC recorded in <path>.dvc


def dvc_env(home: Path) -> dict[str, str]:
    """``tool_env`` for dvc with nothing leaving the machine: no analytics
    (``DVC_NO_ANALYTICS``), no update check (dvc 3.67 asks its updater endpoint only in
    ``dvc version``; ``core.check_update`` is false all the same, in a global config of
    its own, and the endpoint a closed loopback port), no Studio; its site cache under
    ``home`` rather than /var/tmp."""
    (home / "global").mkdir(parents=True, exist_ok=True)
    (home / "global" / "config").write_text("[core]\n    check_update = false\n")
    return {
        **tool_env(),
        "DVC_GLOBAL_CONFIG_DIR": str(home / "global"),
        "DVC_SITE_CACHE_DIR": str(home / "site-cache"),
        "DVC_UPDATER_ENDPOINT": "http://127.0.0.1:9/",
        "DVC_STUDIO_OFFLINE": "1",
    }


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{argv}: {out.stdout}\n{out.stderr}"
    return out.stdout


def dvc_project(root: Path, rows: list[str]) -> DvcProject:
    """A Git + DVC project with ``data/transactions.csv`` (``rows``) added to DVC."""
    root.mkdir(parents=True)
    env = dvc_env(root.parent / f"{root.name}-dvc-home")
    _run(["git", "init", "-q", "-b", "main"], root, env)
    _run([tool("dvc"), "init", "-q"], root, env)
    (root / "data").mkdir()
    (root / "data" / "transactions.csv").write_text("\n".join(rows) + "\n")
    _run([tool("dvc"), "add", "-q", "data/transactions.csv"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-q", "-m", "data v1"], root, env)
    record = yaml.safe_load((root / "data" / "transactions.csv.dvc").read_text())
    return DvcProject(
        repo=root,
        rev=_run(["git", "rev-parse", "HEAD"], root, env).strip(),
        path="data/transactions.csv",
        md5=str(record["outs"][0]["md5"]),
    )


TRAIN = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    import mlflow, pandas
    from mlflow import MlflowClient

    cfg = json.load(sys.stdin)
    # Started while the server starts: the imports above overlap with its own.
    deadline = time.monotonic() + cfg["wait_s"]
    while True:
        try:
            urllib.request.urlopen(cfg["tracking_uri"] + "/health", timeout=5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("the tracking server did not answer")
            time.sleep(0.2)
    mlflow.set_tracking_uri(cfg["tracking_uri"])
    mlflow.set_experiment(cfg["experiment"])
    client = MlflowClient()
    client.create_registered_model(cfg["model"])
    out = []
    for v in cfg["versions"]:
        with mlflow.start_run() as run:
            mlflow.log_params(v["params"])
            for key, value in v["metrics"].items():
                mlflow.log_metric(key, value)
            mlflow.set_tags(v["tags"])
            frame = pandas.read_csv(v["data"])
            dataset = mlflow.data.from_pandas(frame, source=v["data"], name=v["dataset"])
            mlflow.log_input(dataset, context="training")
            mlflow.log_artifacts(v["model_dir"], artifact_path="model")
            source = run.info.artifact_uri + "/model"
        mv = client.create_model_version(
            cfg["model"], source, run_id=run.info.run_id, tags=v.get("version_tags") or {}
        )
        out.append({"version": mv.version, "run_id": run.info.run_id, "source": source,
                    "dataset_digest": dataset.digest})
    client.set_registered_model_alias(cfg["model"], cfg["alias"], out[-1]["version"])
    print(json.dumps(out))
    """
)


def train(server: TrackingServer, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``TRAIN`` with ``config`` (see the script) in the tool virtualenv, once the
    server answers; the registered versions with their run ids and sources."""
    out = subprocess.run(
        [tool("python"), "-c", TRAIN],
        input=json.dumps({**config, "tracking_uri": server.uri, "wait_s": START_TIMEOUT}),
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT + 300,
    )
    if out.returncode != 0:
        server.wait_ready(timeout=0)  # the server's log, if it is the cause
    assert out.returncode == 0, out.stderr[-4000:]
    result: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def set_alias(server: TrackingServer, model: str, alias: str, version: str) -> None:
    """Point ``alias`` of ``model`` at ``version`` (REST: POST registered-models/alias)."""
    request = urllib.request.Request(
        server.uri + "/api/2.0/mlflow/registered-models/alias",
        data=json.dumps({"name": model, "alias": alias, "version": version}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200, resp.read()
