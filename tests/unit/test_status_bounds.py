"""Status is bounded by construction: whatever the input (a 4 KiB query rendered with
long versions, long reasons, long action nonces, many rollbacks), every string and list
the state machine writes fits the CRD's ``maxLength`` / ``maxItems``, on every path that
appends to status (rollback, bake, undo, retry, abort, reject, supersede), so a status
write can never fail on size and hold back a rollback (field case 19)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.analysis.evaluate import record_round
from ferryman.api.common import TRUNCATED, Condition, ConditionStatus, clip
from ferryman.api.rollout import (
    MAX_HISTORY,
    MAX_MEASUREMENTS,
    Gates,
    HistoryEntry,
    Measurement,
    RolloutPhase,
    RolloutStatus,
    Strategy,
    TrafficRouting,
    Verdict,
    action_key,
)
from ferryman.plan import machine
from ferryman.plan.decision import Action
from ferryman.plan.route import Route
from unit.machine_sim import T0, Sim, canary_spec

CRD = Path(__file__).resolve().parents[2] / "crds" / "rollouts.ferryman.dev.yaml"
STATUS_SCHEMA: dict[str, Any] = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"
]["properties"]["status"]


def violations(schema: dict[str, Any], value: Any, path: str = "status") -> list[str]:
    """Where ``value`` exceeds a ``maxLength`` or ``maxItems`` of the CRD ``schema``."""
    found: list[str] = []
    if value is None:
        return found
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        found.append(f"{path}: {len(value)} > maxLength {schema['maxLength']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            found.append(f"{path}: {len(value)} items > maxItems {schema['maxItems']}")
        for i, item in enumerate(value):
            found += violations(schema.get("items", {}), item, f"{path}[{i}]")
    if isinstance(value, dict):
        if len(value) > schema.get("maxProperties", len(value)):
            found.append(f"{path}: {len(value)} keys > maxProperties")
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else {})
            found += violations(sub, item, f"{path}.{key}")
    return found


def check(status: RolloutStatus) -> None:
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert violations(STATUS_SCHEMA, dumped) == []
    # And the model agrees with the API server: it parses back unchanged.
    assert (
        RolloutStatus.model_validate(dumped).model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
        == dumped
    )


LONG_QUERY = 'sum(rate(req{code="500",padding!~"' + "z" * 3900 + '",v="{{version}}"}[1m]))'


def long_version(n: int) -> str:
    """A valid semver of 128 characters, distinct per ``n``."""
    head = f"1.{n}.0-rc."
    return head + "x" * (128 - len(head))


def analysis_spec(**extra: Any) -> Any:
    return canary_spec(
        [{"setWeight": 50}, {"pause": {}}],
        analysis={
            "interval": "10s",
            "failureLimit": 0,
            "metrics": [{"name": "error-rate", "query": LONG_QUERY, "max": 0.01}],
        },
        **extra,
    )


def fail_round(sim: Sim, version: str) -> None:
    a = sim.spec.analysis
    assert a is not None
    rendered = a.metrics[0].query.replace("{{version}}", version) * 3  # longer than 8 KiB
    m = Measurement(
        metric="error-rate",
        query=rendered,
        value=0.3,
        threshold="max 0.01 " * 100,
        verdict=Verdict.FAILED,
        message="0.3 > 0.01 " * 200,
        at=sim.now,
    )
    sim.status.analysis = record_round(
        sim.status.analysis, a, [m], at=sim.now, interval=timedelta(seconds=10)
    )


def succeed_round(sim: Sim, version: str) -> None:
    a = sim.spec.analysis
    assert a is not None
    m = Measurement(
        metric="error-rate",
        query=a.metrics[0].query.replace("{{version}}", version),
        value=0.0,
        threshold="max 0.01",
        verdict=Verdict.SUCCESSFUL,
        at=sim.now,
    )
    sim.status.analysis = record_round(
        sim.status.analysis, a, [m], at=sim.now, interval=timedelta(seconds=10)
    )


def start(sim: Sim, version: str) -> None:
    sim.versions.append(version)
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": version})}
    )
    sim.reconcile()
    sim.tick()


def test_clip_marks_and_fits() -> None:
    assert clip("short", 10) == "short"
    long = clip("x" * 5000, 2048)
    assert len(long) == 2048 and long.endswith(TRUNCATED)


def test_every_status_string_is_clipped_where_it_is_built_or_assigned() -> None:
    s = RolloutStatus()
    s.message = "m" * 10_000
    entry = HistoryEntry(version="1.0.0", outcome="RolledBack", at=T0, reason="r" * 9999)
    s.history = [entry] * (MAX_HISTORY + 30)
    s.rolled_back_versions = [f"1.0.{i}" for i in range(MAX_HISTORY + 30)]
    cond = Condition(type="X", status=ConditionStatus.TRUE, reason="R" * 500, message="c" * 9000)
    s.conditions = [cond]
    assert s.message is not None and s.message.endswith(TRUNCATED)
    assert len(s.history) == MAX_HISTORY and s.rolled_back_versions[-1] == "1.0.129"
    check(s)


def test_long_query_failure_rolls_back_with_a_bounded_reason() -> None:
    """Field case 19 in the pure core: the rollback is decided and its status fits."""
    sim = Sim(analysis_spec())
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    start(sim, "1.1.0")
    assert sim.route is not None and sim.route.candidate_weight == 50
    fail_round(sim, "1.1.0")
    sim.tick()
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    assert sim.route == Route(stable="1.0.0")
    reason = (sim.status.history or [])[-1].reason
    assert "error-rate" in reason and TRUNCATED in reason
    check(sim.status)


def test_every_path_that_appends_to_status_stays_bounded() -> None:
    """Rollback, retry, abort, supersede, reject, promote, bake breach and undo, with
    128-character versions and a long query, many times over: status always fits."""
    spec = analysis_spec(
        bake={"duration": "30s"}, historyLimit=MAX_HISTORY, scaleDownDelaySeconds=3600
    )
    gated = spec.model_copy(
        update={"gates": Gates.model_validate({"offlineMetrics": [{"name": "auc", "min": 0.5}]})}
    )
    sim = Sim(spec, versions=[long_version(0)])
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": long_version(0)})}
    )
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    n = 0
    for _round in range(30):
        n += 1  # analysis rollback, retry, then abort
        start(sim, long_version(n))
        fail_round(sim, long_version(n))
        sim.tick()
        assert sim.status.phase == RolloutPhase.ROLLED_BACK
        check(sim.status)
        sim.reconcile("retry")
        sim.tick()
        sim.reconcile("abort")
        assert sim.status.phase == RolloutPhase.ABORTED
        check(sim.status)
        n += 1  # superseded mid-rollout by a version a gate rejects
        start(sim, long_version(n))
        sim.spec = gated.model_copy(update={"target": sim.spec.target})
        n += 1
        start(sim, long_version(n))
        assert sim.status.phase == RolloutPhase.REJECTED
        sim.spec = spec.model_copy(update={"target": sim.spec.target})
        check(sim.status)
    n += 1  # a promotion with evidence, a bake breach, and an undo
    start(sim, long_version(n))
    sim.reconcile("promote-full")
    succeed_round(sim, long_version(n))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.BAKING)
    fail_round(sim, long_version(n))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.ROLLED_BACK)
    check(sim.status)
    n += 1
    start(sim, long_version(n))
    sim.reconcile("promote-full")
    succeed_round(sim, long_version(n))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.BAKING)
    sim.tick(31)
    sim.reconcile("undo")
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    check(sim.status)
    assert len(sim.status.history or []) == MAX_HISTORY
    assert len(sim.status.rolled_back_versions or []) <= MAX_HISTORY
    measurements = (sim.status.analysis.measurements if sim.status.analysis else None) or []
    assert len(measurements) <= MAX_MEASUREMENTS


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=600))
def test_any_action_nonce_is_recorded_within_bounds_and_handled_once(nonce: str) -> None:
    sim = Sim(canary_spec([{"setWeight": 50}, {"pause": {}}]))
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    start(sim, "1.1.0")
    key = action_key(nonce)
    d = machine.decide(sim.spec, sim.status, sim.observed(Action("promote", key)))
    assert d.status.handled_action_id == key
    check(d.status)
    assert action_key(nonce) == key  # the same nonce maps to the same key: handled once


@pytest.mark.parametrize("size", [1, 128, 129, 5000])
def test_action_key_fits(size: int) -> None:
    key = action_key("n" * size)
    assert len(key) <= 128
    assert (key == "n" * size) == (size <= 128)


@pytest.mark.parametrize("text", ["x" * 5000, "…" * 2000, "ok"])
def test_event_messages_fit_the_api_servers_byte_limit(text: str) -> None:
    from ferryman.api.common import EVENT_MESSAGE_BYTES, event_message

    message = event_message(text)
    assert len(message.encode()) <= EVENT_MESSAGE_BYTES
    assert (message == text) == (len(text.encode()) <= EVENT_MESSAGE_BYTES)


def test_a_shadow_then_32_canary_steps_runs_to_the_end_within_bounds() -> None:
    """33 stages: the step index reaches 33 once all are done (it used to fail the
    status model's bound inside the decision, on every reconcile)."""
    steps = [{"setWeight": 1 + i} for i in range(32)]
    spec = canary_spec(steps).model_copy(
        update={
            "strategy": Strategy.model_validate(
                {
                    "shadow": {
                        "mirrorPercent": 10,
                        "duration": "1s",
                        "then": "canary",
                        "steps": steps,
                    }
                }
            ),
            "traffic_routing": TrafficRouting.model_validate(
                {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
            ),
        }
    )
    sim = Sim(spec)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    start(sim, "1.1.0")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0", limit=400)
    check(sim.status)


def test_failure_counts_of_metrics_no_longer_in_the_spec_are_dropped() -> None:
    """16 metrics, then one renamed: the counts stay within the 16-entry bound, and a
    metric that is gone can no longer roll anything back."""
    metrics = [{"name": f"m{i}", "query": "q", "max": 1} for i in range(16)]
    spec = canary_spec(
        [{"setWeight": 50}], analysis={"interval": "10s", "failureLimit": 0, "metrics": metrics}
    )
    a = spec.analysis
    assert a is not None
    failed = [
        Measurement(metric=f"m{i}", verdict=Verdict.FAILED, at=T0, value=2.0) for i in range(16)
    ]
    status = record_round(None, a, failed, at=T0, interval=timedelta(seconds=10))
    renamed = a.model_copy(
        update={"metrics": [*a.metrics[:15], a.metrics[15].model_copy(update={"name": "new"})]}
    )
    again = [Measurement(metric="new", verdict=Verdict.FAILED, at=T0, value=2.0)]
    status = record_round(status, renamed, again, at=T0, interval=timedelta(seconds=10))
    assert status.failures is not None and len(status.failures) == 16
    assert "m15" not in status.failures and status.failures["new"] == 1
    RolloutStatus(analysis=status)  # within the model's bounds


def test_a_round_that_cannot_measure_is_an_error_round() -> None:
    from ferryman.api.rollout import Rollout
    from ferryman.handlers.analysis import error_round

    spec = analysis_spec()
    rollout = Rollout.model_validate(
        {"metadata": {"name": "fraud"}, "spec": spec.model_dump(by_alias=True, exclude_none=True)}
    )
    status = error_round(rollout, "KeyError: 'token'", T0)
    assert status.consecutive_errors == 1 and not status.failures
    assert [m.verdict for m in status.measurements or []] == [Verdict.ERROR]
    assert (status.measurements or [])[0].message == "KeyError: 'token'"
