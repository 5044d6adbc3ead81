"""A failing pod's termination message reaches the Rollout (plan.pod_failures,
handlers.pods): read from the pod status as the kubelet writes it, indexed only when
failing, shown in the PodFailure condition with one Event per distinct message, and a
deterministic artifact failure rolls the candidate back at once, with no traffic."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest

from ferryman.api.common import ConditionStatus
from ferryman.api.rollout import RolloutPhase
from ferryman.handlers import context, lifecycle, pods
from ferryman.plan import conditions, pod_failures
from ferryman.plan.pod_failures import PodFailure, failure_of
from unit.machine_sim import Sim, canary_spec, retarget

STEPS = [{"setWeight": 10}, {"pause": {}}]
LINE = (
    "DigestMismatch: digest mismatch for https://127.0.0.1/m.bin: expected sha256:aa, got sha256:bb"
)


def pod(
    init: dict[str, Any] | None = None,
    main: dict[str, Any] | None = None,
    *,
    name: str = "fraud-2-0-0-abc",
    version: str = "2.0.0",
    rollout: str = "fraud",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Pending"}
    if init is not None:
        status["initContainerStatuses"] = [{"name": "storage-initializer", **init}]
    if main is not None:
        status["containerStatuses"] = [{"name": "model-server", **main}]
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"ferryman.dev/rollout": rollout, "app.kubernetes.io/managed-by": "ferryman"},
            "annotations": {"ferryman.dev/version": version},
        },
        "status": status,
    }


def terminated(message: str, code: int = 1) -> dict[str, Any]:
    return {"state": {"terminated": {"exitCode": code, "reason": "Error", "message": message}}}


def test_an_init_containers_termination_line_is_read_with_its_reason() -> None:
    found = failure_of(pod(init=terminated("a log line before\n" + LINE + "\nanother after\n")))
    assert found == PodFailure(
        "fraud-2-0-0-abc", "storage-initializer", True, "DigestMismatch", LINE, 1
    )
    assert found.deterministic
    assert found.describe().startswith(
        "pod fraud-2-0-0-abc init container storage-initializer, exit code 1: DigestMismatch: "
    )


def test_while_the_kubelet_backs_off_the_last_termination_is_read() -> None:
    backing_off = {
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": "NotFound: no such object s3://b/m",
            }
        },
    }
    found = failure_of(pod(init=backing_off))
    assert found is not None and found.reason == "NotFound" and found.deterministic


def test_unknown_and_transient_reasons_are_shown_whole_and_not_deterministic() -> None:
    for line, reason in (
        ("Unreachable: cannot connect to 127.0.0.1:9", "Unreachable"),
        ("ValueError: boom", "Error"),  # the last line of kubelet's log-tail fallback
        ("Bogus: not a reason of the contract", "Error"),
    ):
        tail = f"Traceback (most recent call last):\n  File x\n{line}\n"
        found = failure_of(pod(init=terminated(tail)))
        assert found is not None and found.line == line and found.reason == reason
        assert not found.deterministic
    empty = failure_of(pod(init=terminated("")))
    assert empty is not None and empty.line == "Error (no termination message)"


def test_healthy_starting_succeeded_and_deleted_pods_report_nothing() -> None:
    assert failure_of(pod()) is None
    assert failure_of(pod(init={"state": {"running": {}}})) is None
    assert failure_of(pod(init=terminated("", code=0), main={"state": {"running": {}}})) is None
    assert failure_of(pod(main={"state": {"waiting": {"reason": "ContainerCreating"}}})) is None
    gone = pod(init=terminated(LINE))
    gone["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert failure_of(gone) is None


def test_a_crashing_model_server_is_a_server_failure_never_deterministic() -> None:
    crash = {
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {
            "terminated": {"exitCode": 2, "reason": "Error", "message": "DigestMismatch: x"}
        },
    }
    found = failure_of(pod(init=terminated("", code=0), main=crash))
    assert found is not None and not found.init and found.reason == "Error"
    assert not found.deterministic  # only the initializer's reasons count


def test_a_long_line_is_bounded() -> None:
    found = failure_of(pod(init=terminated("Truncated: " + "é" * 2000)))
    assert found is not None and len(found.line.encode()) <= pod_failures.MAX_LINE + 3


# --- the index --------------------------------------------------------------------------


def test_only_failing_pods_are_indexed() -> None:
    body = cast(kopf.Body, pod(init=terminated(LINE)))
    assert pods.pod_failures(body=body, namespace="ns") == {
        ("ns", "fraud"): ("2.0.0", failure_of(pod(init=terminated(LINE))))
    }
    # Healthy: an empty mapping, which kopf stores as nothing and which removes the
    # pod's earlier entry (None would keep it).
    assert (
        pods.pod_failures(
            body=cast(kopf.Body, pod(init={"state": {"running": {}}})), namespace="ns"
        )
        == {}
    )


def test_a_kopf_index_keeps_nothing_for_a_pod_that_recovered() -> None:
    from kopf._core.engines.indexing import OperatorIndexer

    indexer = OperatorIndexer()
    key: Any = ("ns", "fraud-2-0-0-abc", None)
    indexer.replace(
        key, pods.pod_failures(body=cast(kopf.Body, pod(init=terminated(LINE))), namespace="ns")
    )
    assert len(indexer.index) == 1
    indexer.replace(key, pods.pod_failures(body=cast(kopf.Body, pod()), namespace="ns"))
    assert len(indexer.index) == 0


def test_failures_by_version_picks_one_per_version() -> None:
    a = PodFailure("p-b", "storage-initializer", True, "Unreachable", "Unreachable: x", 1)
    b = PodFailure("p-a", "storage-initializer", True, "DigestMismatch", LINE, 1)
    c = PodFailure("p-0", "model-server", False, "Error", "boom", 1)
    index = {("ns", "fraud"): [("2.0.0", a), ("2.0.0", b), ("1.0.0", c)]}
    assert pods.failures_by_version({pods.INDEX: index}, "ns", "fraud") == {"2.0.0": b, "1.0.0": c}
    assert pods.failures_by_version({pods.INDEX: index}, "ns", "other") == {}


def test_the_pod_watch_is_label_selected_by_the_server() -> None:
    s = kopf.OperatorSettings()
    lifecycle.apply_settings(s)
    assert s.watching.label_selectors["", "v1", "pods"] == "app.kubernetes.io/managed-by=ferryman"


def test_only_a_changed_failure_wakes_the_rollout() -> None:
    woken: list[tuple[str, str]] = []
    memo = kopf.Memo()

    class Events(dict[tuple[str, str], asyncio.Event]):
        def setdefault(self, key: Any, default: Any = None) -> Any:
            woken.append(key)
            return super().setdefault(key, asyncio.Event())

    ctx = context.OperatorContext(kube=cast(Any, None), http=cast(Any, None))
    ctx.wakeups = Events()
    context.install(memo, ctx)

    def event(body: dict[str, Any], type: str = "MODIFIED") -> None:
        asyncio.run(
            pods.pod_changed(
                type=type, body=cast(kopf.Body, body), namespace="ns", name="p", memo=memo
            )
        )

    event(pod())  # healthy: nothing
    event(pod(init=terminated(LINE)))  # failing: wake
    event(pod(init=terminated(LINE)))  # the same failure: nothing
    event(pod(init=terminated("NotFound: other")))  # changed: wake
    event(pod(init=terminated("NotFound: other")), type="DELETED")  # gone: wake
    event(pod())  # still healthy: nothing
    assert woken == [("ns", "fraud")] * 3


# --- the state machine ------------------------------------------------------------------


def failing(reason: str, line: str | None = None) -> PodFailure:
    return PodFailure(
        "fraud-1-1-0-x", "storage-initializer", True, reason, line or f"{reason}: detail", 1
    )


def in_canary() -> Sim:
    sim = Sim(canary_spec(STEPS))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.broken.add("1.1.0")  # its pods never become Ready
    sim.reconcile()
    return sim


def test_a_deterministic_artifact_failure_rolls_back_at_once_without_traffic() -> None:
    sim = in_canary()
    assert sim.status.candidate_version == "1.1.0"
    sim.pod_failures["1.1.0"] = failing("DigestMismatch", LINE)
    d = sim.tick()
    s = sim.status
    assert s.phase == RolloutPhase.ROLLED_BACK and s.candidate_version is None
    assert s.rolled_back_versions == ["1.1.0"]
    last = (s.history or [])[-1]
    assert last.cause == "ArtifactFailed" and LINE in last.reason
    assert LINE in (s.message or "")
    cond = conditions.find(s.conditions, pod_failures.CONDITION)
    assert cond is not None and cond.status == ConditionStatus.TRUE
    assert (
        cond.reason == "ArtifactFailed" and "fraud-1-1-0-x" in cond.message and LINE in cond.message
    )
    assert [e.reason for e in d.events].count("ArtifactFailed") == 1
    assert sim.route is not None and sim.route.candidate_weight == 0
    # The next reconciles: the version is no longer served; no Event storm.
    again = sim.tick()
    assert "ArtifactFailed" not in [e.reason for e in again.events]
    cond = conditions.find(sim.status.conditions, pod_failures.CONDITION)
    assert cond is not None and cond.status == ConditionStatus.FALSE and LINE in cond.message


@pytest.mark.parametrize("reason", sorted(pod_failures.DETERMINISTIC))
def test_every_deterministic_reason_rolls_back(reason: str) -> None:
    sim = in_canary()
    sim.pod_failures["1.1.0"] = failing(reason)
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK


def test_a_transient_failure_is_reported_once_and_left_to_the_progress_deadline() -> None:
    sim = in_canary()
    sim.pod_failures["1.1.0"] = failing("Unreachable")
    events = []
    for _ in range(5):
        events += [e.reason for e in sim.tick().events]
    s = sim.status
    assert s.phase == RolloutPhase.PROGRESSING and s.candidate_version == "1.1.0"
    assert events.count("ArtifactFailed") == 1  # one per distinct message
    assert "Unreachable: detail" in (s.message or "")
    assert sim.route is not None and sim.route.candidate_weight == 0
    # A new message is a new Event.
    sim.pod_failures["1.1.0"] = failing("Unreachable", "Unreachable: another detail")
    assert [e.reason for e in sim.tick().events].count("ArtifactFailed") == 1
    message = sim.status.message or ""
    assert "another detail" in message and "Unreachable: detail" not in message
    sim.tick()
    assert sim.status.message == message  # not appended again
    sim.run_until(lambda x: x.status.phase == RolloutPhase.ROLLED_BACK, seconds=30)
    assert (sim.status.history or [])[-1].cause == "ProgressDeadline"


def test_a_first_rollout_with_a_bad_artifact_ends_without_serving() -> None:
    sim = Sim(canary_spec(STEPS))
    sim.broken.add("1.0.0")
    sim.reconcile()
    sim.pod_failures["1.0.0"] = failing("NotFound")
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK and sim.status.stable_version is None
    assert sim.replicas == {}
