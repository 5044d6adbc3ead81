"""The wheel, installed alone, is a working ferryman: what the image contains.

The wheel is built with ``python -m build --wheel`` from a copy of exactly what the
Docker build context admits (.dockerignore: pyproject.toml, README.md, operator/) and
installed with its runtime dependencies and the ``storage`` extra (what the Dockerfile
installs) only into a fresh virtualenv, no dev extra, no editable install. From that
virtualenv, with the repository out of reach (another working directory, no
PYTHONPATH), this runs the operator against the control plane (liveness, metrics, a
ModelVersion registered), the storage initializer (each scheme once: https, s3, gs, oci,
pvc, against the real servers of test_storage_init.py), and the ``kubectl-ferryman``
entry point (``digest``). A runtime dependency missing
from pyproject.toml or a module left out of the wheel fails here, not in a user's pod.

The wheel and the virtualenv are made once per module (per pytest-xdist worker).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from cases.api_cases import model_version
from e2e.test_storage_init import (  # noqa: F401 (fixtures)
    ARTIFACT,
    FILE_DIGEST,
    gcs,
    https_server,
    oci,
    s3,
    tree_digest,
    tree_src,
)
from harness.kube import Cluster, wait_for
from harness.net import free_port

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# What .dockerignore admits into the image's build context (tests/image checks that list).
CONTEXT = ("pyproject.toml", "README.md", "operator")
# The extra the Dockerfile installs with the wheel: the storage initializer's stores.
EXTRA = "storage"

pytestmark = pytest.mark.usefixtures("ferryman_crds")


@dataclass
class WheelVenv:
    wheel: Path
    venv: Path
    workdir: Path  # a directory outside the repository to run from
    timings: dict[str, float]

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def python(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return run([str(self.bin / "python"), *args], cwd=self.workdir, **kwargs)  # type: ignore[arg-type]


def run(
    argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> WheelVenv:
    """Built once per test session: pytest-xdist workers share the session's temporary
    root, and the first worker to take the lock builds while the others wait."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, shared by its workers
    base = root / "wheel-alone"
    base.mkdir(exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (base / "ready.json").exists():
                made = make_wheel_venv(base)
                (base / "ready.json").write_text(json.dumps(made.timings))
            timings = json.loads((base / "ready.json").read_text())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    print(f"wheel-alone timings (s): {timings}")
    (wheel,) = (base / "dist").glob("ferryman-*.whl")
    return WheelVenv(wheel, base / "venv", base / "elsewhere", timings)


def make_wheel_venv(base: Path) -> WheelVenv:
    timings: dict[str, float] = {}
    src = base / "context"
    src.mkdir()
    for name in CONTEXT:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, src / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, src / name)
    start = time.monotonic()
    run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(base / "dist"), str(src)],
        cwd=src,
    )
    timings["build wheel"] = time.monotonic() - start
    (wheel,) = (base / "dist").glob("ferryman-*.whl")
    assert wheel.name == f"ferryman-{VERSION}-py3-none-any.whl"

    start = time.monotonic()
    wheelhouse = dependency_wheelhouse(wheel)
    timings["dependency wheelhouse"] = time.monotonic() - start
    start = time.monotonic()
    venv = base / "venv"
    # No pip inside: the test's own pip installs into it (`--python`), which saves
    # ensurepip's minute under load and leaves the venv with the wheel's closure only.
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    pip(
        venv,
        "install",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(wheelhouse),
        f"{wheel}[{EXTRA}]",
    )
    timings["venv + install"] = time.monotonic() - start
    workdir = base / "elsewhere"
    workdir.mkdir()
    return WheelVenv(wheel, venv, workdir, timings)


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The test's pip acting on ``venv``'s interpreter."""
    argv = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    return run([*argv, "--disable-pip-version-check", "--quiet", *args], cwd=venv)


def dependency_wheelhouse(wheel: Path) -> Path:
    """The wheels of ``wheel``'s runtime dependency closure, as ``pip download`` resolves
    them from its metadata, cached outside the repository keyed by that metadata's
    Requires-Dist and this interpreter (a changed dependency in pyproject.toml makes a
    new one). A warm run installs from it without the network; the closure is exactly
    what the wheel declares, so a dependency missing from pyproject.toml is missing here
    too."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        requires = sorted(
            line
            for line in zf.read(name).decode().splitlines()
            if line.startswith("Requires-Dist:")
            and ("extra ==" not in line or f'extra == "{EXTRA}"' in line)
        )
    key = hashlib.sha256(
        "\n".join([sys.implementation.cache_tag, sysconfig.get_platform(), *requires]).encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("FERRYMAN_CACHE", Path.home() / ".cache" / "ferryman"))
    house = cache / "wheelhouse" / key
    if not (house / ".complete").exists():
        house.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=house.parent))
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
                str(tmp),
                f"{wheel}[{EXTRA}]",
            ],
            cwd=tmp,
        )
        (tmp / wheel.name).unlink(
            missing_ok=True
        )  # the ferryman wheel itself is not part of the cache
        (tmp / ".complete").write_text("\n".join(requires) + "\n")
        try:
            tmp.rename(house)  # atomic; another worker may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return house


def clean_env(wv: WheelVenv, cluster: Cluster | None = None) -> dict[str, str]:
    """The venv's bin first on PATH; no PYTHONPATH, no VIRTUAL_ENV of the test's own."""
    env = dict(cluster.env if cluster else os.environ)
    for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(var, None)
    env["PATH"] = f"{wv.bin}:{env.get('PATH', '')}"
    return env


def test_wheel_installs_alone_with_runtime_dependencies_only(wheel_venv: WheelVenv) -> None:
    where = wheel_venv.python(
        "-c",
        "import ferryman, ferryman.settings as s; print(ferryman.__file__); print(s.DEFAULT_IMAGE)",
        env=clean_env(wheel_venv),
    ).stdout.split()
    assert Path(where[0]).is_relative_to(wheel_venv.venv), where  # not the repository's copy
    assert where[1] == f"ghcr.io/ferryman-dev/ferryman:{VERSION}"
    pip(wheel_venv.venv, "check")
    # No dev extra: the test tools are not there.
    probe = subprocess.run(
        [str(wheel_venv.bin / "python"), "-c", "import pytest"],
        capture_output=True,
        cwd=wheel_venv.workdir,
        env=clean_env(wheel_venv),
    )
    assert probe.returncode == 1 and b"No module named 'pytest'" in probe.stderr
    out = run(
        [str(wheel_venv.bin / "kubectl-ferryman"), "--help"],
        cwd=wheel_venv.workdir,
        env=clean_env(wheel_venv),
    ).stdout
    assert "usage:" in out.lower() and "promote" in out


def test_operator_from_the_wheel_reconciles(
    wheel_venv: WheelVenv, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    metrics_port = free_port()
    env = {
        **clean_env(wheel_venv, cluster),
        "FERRYMAN_METRICS_ADDRESS": "127.0.0.1",
        "FERRYMAN_METRICS_PORT": str(metrics_port),
    }
    log = tmp_path / "operator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(wheel_venv.bin / "python"),
                "-m",
                "ferryman",
                f"--liveness={liveness}",
                f"--namespace={namespace}",
            ],
            cwd=wheel_venv.workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def get(url: str) -> str | None:
            assert proc.poll() is None, f"operator exited {proc.returncode}:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return str(resp.read().decode())
            except OSError:
                return None

        wait_for(lambda: get(liveness) is not None, timeout=60, message="liveness answers")
        body = wait_for(
            lambda: get(f"http://127.0.0.1:{metrics_port}/metrics"),
            timeout=30,
            message="metrics served",
        )
        assert "ferryman_rollout_phase" in body
        cluster.apply(model_version(name="wheel-1-3-0"), namespace=namespace)

        def phase() -> str | None:
            obj = cluster.get_json("modelversion", "wheel-1-3-0", namespace) or {}
            return (obj.get("status") or {}).get("phase")

        assert wait_for(phase, timeout=60, message="ModelVersion status phase") == "Registered"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        print(f"--- operator log tail ---\n{log.read_text(errors='replace')[-4000:]}")


def test_storage_initializer_from_the_wheel_fetches_and_verifies(
    wheel_venv: WheelVenv,
    https_server: tuple[str, Path, list[str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    base, ca, seen_auth = https_server
    digest = "sha256:" + hashlib.sha256(ARTIFACT).hexdigest()
    dest = tmp_path / "models"
    env = {**clean_env(wheel_venv), "MODEL_STORE_TOKEN": "from-the-wheel"}
    wheel_venv.python(
        "-m",
        "ferryman.storage_init",
        f"--uri={base}/models/fraud/model.onnx",
        f"--digest={digest}",
        f"--dest={dest}",
        f"--ca-file={ca}",
        env=env,
    )
    assert (dest / "model.onnx").read_bytes() == ARTIFACT
    assert (dest / ".digest").read_text().strip() == digest
    assert seen_auth == ["Bearer from-the-wheel"]
    # And it refuses a wrong digest from the same install, leaving nothing behind.
    wrong = subprocess.run(
        [
            str(wheel_venv.bin / "python"),
            "-m",
            "ferryman.storage_init",
            f"--uri={base}/models/fraud/model.onnx",
            "--digest=sha256:" + "0" * 64,
            f"--dest={tmp_path / 'wrong'}",
            f"--ca-file={ca}",
        ],
        cwd=wheel_venv.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 1 and f"got {digest}" in wrong.stderr
    assert list((tmp_path / "wrong").iterdir()) == []


@pytest.mark.parametrize("scheme", ["s3", "gcs", "oci"])
def test_each_store_of_the_storage_extra_from_the_wheel(
    wheel_venv: WheelVenv, scheme: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """s3 (obstore), gs (google-cloud-storage) and oci (oras) from the wheel and its
    storage extra alone, against the same real servers as tests/e2e/test_storage_init.py."""
    store = request.getfixturevalue(scheme)
    dest = tmp_path / "models"
    wheel_venv.python(
        "-m",
        "ferryman.storage_init",
        f"--uri={store.file_uri}",
        f"--digest={FILE_DIGEST}",
        f"--dest={dest}",
        f"--termination-log={tmp_path / 'termination-log'}",
        env={**clean_env(wheel_venv), **store.env},
    )
    assert (dest / "model.onnx").read_bytes() == ARTIFACT


def test_a_claim_directory_and_its_digest_from_the_wheel(
    wheel_venv: WheelVenv,
    tree_src: Path,  # noqa: F811
    tree_digest: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """pvc:// verified in place, and ``kubectl-ferryman digest`` printing the same digest."""
    shutil.copytree(tree_src, tmp_path / "pvc" / "claim" / "fraud")
    printed = run(
        [str(wheel_venv.bin / "kubectl-ferryman"), "digest", str(tree_src)],
        cwd=wheel_venv.workdir,
        env=clean_env(wheel_venv),
    ).stdout
    assert printed == f"{tree_digest}\n"
    wheel_venv.python(
        "-m",
        "ferryman.storage_init",
        "--uri=pvc://claim/fraud",
        f"--digest={tree_digest}",
        f"--dest={tmp_path / 'models'}",
        f"--pvc-root={tmp_path / 'pvc'}",
        f"--termination-log={tmp_path / 'termination-log'}",
        env=clean_env(wheel_venv),
    )


def test_the_fresh_venv_sees_nothing_but_what_the_wheel_declares(
    wheel_venv: WheelVenv, tmp_path: Path
) -> None:
    """The check above can fail: the same wheel without its dependencies (--no-deps) in
    another fresh venv cannot start, so nothing leaks in from the test's own virtualenv
    or the system's site-packages."""
    bare = tmp_path / "bare"
    run([sys.executable, "-m", "venv", "--without-pip", str(bare)], cwd=tmp_path)
    pip(bare, "install", "--no-compile", "--no-index", "--no-deps", str(wheel_venv.wheel))
    result = subprocess.run(
        [str(bare / "bin" / "python"), "-m", "ferryman", "--help"],
        cwd=wheel_venv.workdir,
        env=clean_env(wheel_venv),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named" in result.stderr, result.stderr
