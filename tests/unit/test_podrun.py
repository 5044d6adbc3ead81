"""harness.podrun's pure rules: the kubelet's termination message, its $(VAR) expansion,
the path rewriting that stands in for volume mounts, and the statuses the test kubelet
writes (read back by plan.pod_failures as the operator reads a real kubelet's)."""

from __future__ import annotations

from pathlib import Path

import localcluster

from ferryman.plan.pod_failures import failure_of
from harness import podrun


def test_the_file_wins_and_is_bounded() -> None:
    assert podrun.termination_message(b"NotFound: x", b"log", "FallbackToLogsOnError", 1) == (
        "NotFound: x"
    )
    big = b"x" * 10_000
    assert len(podrun.termination_message(big, b"", "File", 1)) == podrun.MAX_MESSAGE


def test_the_log_tail_only_with_fallback_and_a_failure() -> None:
    logs = b"".join(b"line %d\n" % i for i in range(200))
    tail = podrun.termination_message(b"", logs, "FallbackToLogsOnError", 1)
    assert tail.splitlines()[-1] == "line 199" and len(tail.splitlines()) == 80
    assert podrun.termination_message(b"", logs, "File", 1) == ""
    assert podrun.termination_message(b"", logs, "FallbackToLogsOnError", 0) == ""
    long_lines = b"".join(b"%d" % i + b"y" * 100 + b"\n" for i in range(80))
    tail = podrun.termination_message(b"", long_lines, "FallbackToLogsOnError", 2)
    assert len(tail.encode()) == podrun.MAX_LOG_BYTES and tail.endswith("y\n")


def test_variable_expansion_as_the_kubelet_does_it() -> None:
    env = {"PORT": "8080"}
    assert podrun.expand("--port=$(PORT)", env) == "--port=8080"
    assert podrun.expand("$(MISSING) $$(PORT) $$", env) == "$(MISSING) $(PORT) $"


def test_whole_paths_only_are_rewritten() -> None:
    paths = {"/mnt/models": Path("/tmp/w/v"), "/dev/termination-log": Path("/tmp/w/t")}
    assert podrun.rewrite("--dest=/mnt/models", paths) == "--dest=/tmp/w/v"
    assert podrun.rewrite("/mnt/models/a.onnx", paths) == "/tmp/w/v/a.onnx"
    assert podrun.rewrite("/mnt/modelsX /x/mnt/models", paths) == "/mnt/modelsX /x/mnt/models"
    assert podrun.rewrite("open('/dev/termination-log', 'w')", paths) == "open('/tmp/w/t', 'w')"
    assert podrun.rewrite("--termination-log=/dev/termination-log", paths) == (
        "--termination-log=/tmp/w/t"
    )


def pod() -> dict[str, object]:
    return {
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "storage-initializer", "image": "i"}],
            "containers": [{"name": "model-server", "image": "m"}],
        },
    }


def test_the_written_statuses_read_as_the_operator_reads_a_kubelets() -> None:
    result = podrun.Result(1, "DigestMismatch: expected a, got b\n", "")
    for restarts in (False, True):
        status = podrun.init_failed_status(pod(), "storage-initializer", result, restarts)
        assert status["phase"] == "Pending"
        found = failure_of({"metadata": {"name": "p"}, "status": status})
        assert found is not None and found.reason == "DigestMismatch" and found.exit_code == 1
    assert failure_of({"metadata": {"name": "p"}, "status": podrun.started_status(pod())}) is None
    crashed = podrun.server_crashed_status(pod(), "model-server", podrun.Result(3, "Boom: x", ""))
    found = failure_of({"metadata": {"name": "p"}, "status": crashed})
    assert found is not None and not found.init and found.line == "Boom: x"
    assert found.exit_code == 3


def test_kwoks_ready_stage_leaves_the_played_pods_alone() -> None:
    """A delayed kwok stage fires even after the test wrote its status (kwok 0.8 does not
    cancel it): the stage must not match a played pod in the first place."""
    ready = (localcluster.HERE / "stages" / "pod-ready.yaml").read_text()
    assert f'.metadata.annotations["{podrun.TEST_KUBELET}"]' in ready
