"""The durable audit trail (issue 17 §4): each ModelVersion's serving history
(``plan.serving_history`` through ``plan.roles``), the failed measurement a rollback
keeps, and what falls off a bounded history (the Rollout's and the ModelVersion's) is
summarized, not silently dropped. Driven by the state machine over the simulated cluster,
as tests/unit/test_roles.py does."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ferryman.api.common import TRUNCATED
from ferryman.api.modelversion import ModelVersion, Role
from ferryman.api.rollout import (
    QUOTED_QUERY,
    HistoryEntry,
    HistoryOutcome,
    Measurement,
    RolloutPhase,
    RolloutStatus,
    Verdict,
)
from ferryman.api.serving_history import MAX_SERVED_INTERVALS, ServedInterval
from ferryman.plan import serving_history
from ferryman.plan.endings import add_history, evidence
from ferryman.plan.roles import status_patches
from unit.machine_sim import T0, Sim, canary_spec, retarget
from unit.test_machine_analysis import ANALYSIS, measure
from unit.test_machine_strategies import ISTIO, spec_with
from unit.test_roles import Registry, settled
from unit.test_status_bounds import LONG_QUERY, violations

STEPS = [{"setWeight": 50}, {"pause": {}}]


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def intervals(reg: Registry, version: str) -> list[dict[str, Any]]:
    return list(reg.of(version).get("servingHistory") or [])


def quiet(reg: Registry) -> None:
    """Deciding again on what was just written writes nothing (no write loop)."""
    assert status_patches("fraud", reg.sim.spec, reg.sim.status, reg.objects(), reg.sim.now) == {}


def synced_until(reg: Registry, done: Callable[[], bool]) -> None:
    for _ in range(200):
        if done():
            return
        reg.step()
    raise AssertionError(reg.sim.status)


def good(reg: Registry, done: Callable[[], bool]) -> None:
    """Reconcile, measuring a successful round each second, until ``done()``."""
    for _ in range(60):
        if done():
            return
        measure(reg.sim, Verdict.SUCCESSFUL)
        reg.step()
    raise AssertionError(reg.sim.status)


def test_three_versions_keep_their_intervals_after_the_rollout_is_gone() -> None:
    sim, reg = settled(canary_spec(STEPS, analysis=ANALYSIS))
    quiet(reg)
    first = intervals(reg, "1.0.0")
    assert [(i["rollout"], i["roles"], i.get("outcome")) for i in first] == [
        ("fraud", ["candidate", "stable"], "Promoted")
    ]
    assert t(first[0]["servedFrom"]) == t(reg.of("1.0.0")["servedFrom"])
    assert "servedUntil" not in first[0] and "ended" not in first[0]

    # 1.1.0: canary, measured good, promoted: 1.0.0's interval ends, replaced by 1.1.0.
    retarget(sim, "1.1.0")
    good(reg, lambda: sim.status.phase == RolloutPhase.PAUSED)
    reg.step(action="promote")
    good(reg, lambda: sim.status.stable_version == "1.1.0")
    quiet(reg)
    (old,) = intervals(reg, "1.0.0")
    assert (old["ended"], old["replacedBy"], old["outcome"]) == ("Replaced", "1.1.0", "Promoted")
    assert old["servedUntil"]
    (new,) = intervals(reg, "1.1.0")
    assert new["roles"] == ["candidate", "stable"] and new["outcome"] == "Promoted"

    # 1.2.0: analysis fails beyond the limit: rolled back, with the measurement.
    sim.versions.append("1.2.0")
    retarget(sim, "1.2.0")
    reg.step()
    for _ in range(3):
        measure(sim, Verdict.FAILED, value=0.5)
        reg.step(10)
        if sim.status.phase == RolloutPhase.ROLLED_BACK:
            break
    assert sim.status.phase == RolloutPhase.ROLLED_BACK
    quiet(reg)
    (bad,) = intervals(reg, "1.2.0")
    assert (bad["ended"], bad["outcome"], bad["cause"]) == ("RolledBack", "RolledBack", "Analysis")
    assert bad["roles"] == ["candidate"] and bad["reason"].startswith("analysis: metric error-rate")
    assert bad["measurement"]["metric"] == "error-rate" and bad["measurement"]["value"] == 0.5
    assert bad["measurement"]["verdict"] == "Failed"
    last = reg.of("1.2.0")["lastOutcome"]
    assert (last["cause"], last["rollout"], last["measurement"]["value"]) == (
        "Analysis",
        "fraud",
        0.5,
    )

    # The Rollout is deleted: what still served ends RolloutDeleted; the rest stays.
    reg.sync(gone=True)
    (kept,) = intervals(reg, "1.1.0")
    assert kept["ended"] == "RolloutDeleted" and kept["outcome"] == "Promoted"
    assert intervals(reg, "1.2.0") == [bad] and intervals(reg, "1.0.0") == [old]
    assert status_patches("fraud", sim.spec, None, reg.objects(), sim.now) == {}


def test_aborted_and_superseded_candidates_and_a_return_to_service() -> None:
    sim, reg = settled(canary_spec(STEPS))
    retarget(sim, "1.1.0")
    reg.step()
    reg.step(action="abort")
    (aborted,) = intervals(reg, "1.1.0")
    assert (aborted["ended"], aborted["cause"], aborted["reason"]) == (
        "Aborted",
        "User",
        "aborted by user",
    )
    # Retried: a second interval of the same version, its own verdict.
    reg.step(action="retry")
    reg.step()
    assert reg.of("1.1.0")["role"] == "candidate"
    sim.versions.append("1.2.0")
    retarget(sim, "1.2.0")
    reg.step()
    first, second = intervals(reg, "1.1.0")
    assert first == aborted
    assert (second["ended"], second["outcome"]) == ("Superseded", "Superseded")
    assert t(second["servedFrom"]) >= t(first["servedUntil"])
    quiet(reg)


def test_a_blue_green_preview_then_stable_lists_both_roles() -> None:
    sim, reg = settled(spec_with({"blueGreen": {}}, ISTIO))
    retarget(sim, "1.1.0")
    synced_until(reg, lambda: sim.status.phase == RolloutPhase.PAUSED)
    reg.step(action="promote")
    sim.run_until(lambda s: s.status.stable_version == "1.1.0")
    reg.sync()
    assert intervals(reg, "1.1.0")[0]["roles"] == ["preview", "stable"]


def test_an_upgraded_operator_keeps_the_served_from_it_had() -> None:
    _, reg = settled(canary_spec(STEPS))
    since = T0 - timedelta(days=3)
    reg.status["fraud-1.0.0"] = {
        "phase": "Serving",
        "role": "stable",
        "rollout": "fraud",
        "servedFrom": since.isoformat(),
        "lastOutcome": reg.of("1.0.0")["lastOutcome"],
    }
    reg.sync()
    (opened,) = intervals(reg, "1.0.0")
    assert t(opened["servedFrom"]) == since
    assert opened["roles"] == ["stable"] and opened["outcome"] == "Promoted"


def _mv(history: list[ServedInterval]) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {"name": "fraud-1-0-0", "namespace": "risk"},
            "spec": {
                "model": "fraud",
                "version": "1.0.0",
                "artifact": {"uri": "s3://m/x", "digest": "sha256:" + "0" * 64},
                "serving": {"image": "srv"},
            },
            "status": {
                "phase": "Retired",
                "servingHistory": [i.model_dump(by_alias=True, mode="json") for i in history],
            },
        }
    )


def test_the_oldest_intervals_fall_off_and_are_counted() -> None:
    closed = [
        ServedInterval(
            rollout="fraud",
            served_from=T0 + timedelta(hours=2 * k),
            served_until=T0 + timedelta(hours=2 * k + 1),
            roles=["candidate"],  # type: ignore[list-item]
            ended="Aborted" if k < 2 else "Superseded",  # type: ignore[arg-type]
        )
        for k in range(MAX_SERVED_INTERVALS)
    ]
    now = T0 + timedelta(days=5)
    mv = _mv(closed)
    kept, dropped = serving_history.serving_history(mv, "fraud", Role.CANDIDATE, None, now)
    assert len(kept) == MAX_SERVED_INTERVALS and dropped == closed[:1]
    assert kept[-1].served_from == now and kept[:-1] == closed[1:]
    patch = serving_history.history_patch(mv, "fraud", Role.CANDIDATE, None, now)
    assert patch["olderServingHistory"] == {
        "count": 1,
        "since": T0.isoformat().replace("+00:00", "Z"),
        "until": (T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "outcomes": {"Aborted": 1},
    }
    # Another Rollout's open interval (its status names it) is never closed by a Rollout
    # that does not serve it.
    other = _mv([ServedInterval(rollout="other", served_from=T0, roles=["stable"])])  # type: ignore[list-item]
    other.status.rollout = "other"
    assert serving_history.history_patch(other, "fraud", Role.NONE, None, now) == {}


def test_rollout_history_past_its_limit_is_summarized() -> None:
    spec = canary_spec(STEPS).model_copy(update={"history_limit": 3})
    status = RolloutStatus()
    outcomes = [HistoryOutcome.PROMOTED, HistoryOutcome.ABORTED, HistoryOutcome.PROMOTED]
    for k, outcome in enumerate([*outcomes, HistoryOutcome.ROLLED_BACK, HistoryOutcome.PROMOTED]):
        entry = HistoryEntry(version=f"1.{k}.0", outcome=outcome, at=T0 + timedelta(minutes=k))
        add_history(status, spec, entry)
    assert [h.version for h in status.history or []] == ["1.2.0", "1.3.0", "1.4.0"]
    older = status.older_history
    assert older is not None
    assert (older.count, older.since, older.until) == (2, T0, T0 + timedelta(minutes=1))
    assert older.outcomes == {"Promoted": 1, "Aborted": 1}


def test_the_measurement_a_rollback_keeps_is_shortened() -> None:
    m = Measurement(
        metric="error-rate",
        query="x" * 4000,
        value=0.5,
        threshold="max 0.01",
        verdict=Verdict.FAILED,
        message="m" * 1000,
        at=T0,
    )
    kept = evidence(m)
    assert kept is not None
    assert len(kept.query) == QUOTED_QUERY and kept.query.endswith(TRUNCATED)
    assert len(kept.message) <= 512 and kept.value == 0.5
    # failed_metric's stand-in when the measurement left the bounded list: nothing kept.
    stand_in = Measurement(metric="error-rate", verdict=Verdict.FAILED, at=datetime.min)
    assert evidence(stand_in) is None


def test_every_reconcile_of_a_long_simulation_is_quiet_after_its_write() -> None:
    sim = Sim(canary_spec(STEPS, analysis=ANALYSIS))
    reg = Registry(sim)
    for k in range(6):
        version = f"1.{k + 1}.0"
        synced_until(reg, lambda: sim.status.phase != RolloutPhase.PROGRESSING)
        sim.versions.append(version)
        retarget(sim, version)
        for _ in range(4):
            reg.step()
            quiet(reg)
            measure(sim, Verdict.SUCCESSFUL if k % 2 else Verdict.FAILED, value=0.2)
        if sim.status.phase == RolloutPhase.PAUSED:
            reg.step(action="promote")
            quiet(reg)
    served = [i for v in sim.versions for i in intervals(reg, v)]
    assert served and all(i["servedFrom"] <= i.get("servedUntil", "9") for i in served)
    assert all(i.get("ended") for v in sim.versions for i in intervals(reg, v)[:-1])


def test_a_full_serving_history_of_worst_case_entries_fits_the_crd() -> None:
    """Bounded by construction: 20 intervals with the longest reason and a measurement
    (a 4 KiB rendered query, a long message) fit every maxLength / maxItems of the
    ModelVersion CRD, and stay small (about 4 KiB each)."""
    crd = Path(__file__).resolve().parents[2] / "crds" / "modelversions.ferryman.dev.yaml"
    schema = yaml.safe_load(crd.read_text())["spec"]["versions"][0]["schema"]
    status_schema = schema["openAPIV3Schema"]["properties"]["status"]
    m = evidence(
        Measurement(
            metric="m" * 63,
            query=LONG_QUERY,
            value=1.0,
            threshold="t" * 300,
            verdict=Verdict.FAILED,
            message="x" * 5000,
            at=T0,
        )
    )
    entry = HistoryEntry(
        version="1.0.0",
        outcome=HistoryOutcome.ROLLED_BACK,
        at=T0,
        reason="r" * 10_000,
        measurement=m,
    )
    status = RolloutStatus(history=[entry])
    mv = _mv([])
    for k in range(MAX_SERVED_INTERVALS + 3):
        now = T0 + timedelta(hours=k)
        status.history = [entry.model_copy(update={"at": now})]
        for role in (Role.CANDIDATE, Role.NONE):
            patch = serving_history.history_patch(mv, "fraud", role, status, now)
            dumped = mv.status.model_dump(by_alias=True, mode="json", exclude_none=True)
            mv = mv.model_copy(update={"status": mv.status.model_validate({**dumped, **patch})})
    dumped = mv.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert len(dumped["servingHistory"]) == MAX_SERVED_INTERVALS
    assert dumped["olderServingHistory"]["count"] == 3
    assert violations(status_schema, dumped) == []
    assert len(json.dumps(dumped["servingHistory"])) < MAX_SERVED_INTERVALS * 4096


def test_an_open_interval_a_gone_rollout_left_is_closed_by_the_rollout_serving_the_model() -> None:
    """Rollout old was deleted before kopf's index showed that 1.0.0 served it (the
    deletion handler closes only what the index says it served), or its finalizer was
    taken off by hand: 1.0.0 keeps an open interval of old. Once no ModelVersion status
    names old any more, the Rollout that serves the model now closes it as Released;
    before, it stayed open for ever (lineage said it still served; retention kept it
    as serving)."""
    open_ = ServedInterval.model_validate(
        {"rollout": "old", "servedFrom": T0.isoformat(), "roles": ["candidate"]}
    )
    mv = _mv([open_])
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="2.0.0")
    kept, _ = serving_history.serving_history(mv, "fraud-next", Role.NONE, status, T0 + DAY)
    (closed,) = kept
    assert closed.served_until == T0 + DAY and closed.ended == "Released"
    # While a status still names old (its handler may yet close it), it is left alone.
    named = mv.model_copy(
        update={"status": mv.status.model_copy(update={"rollout": "old", "phase": "Serving"})}
    )
    kept, _ = serving_history.serving_history(named, "fraud-next", Role.NONE, status, T0 + DAY)
    assert kept == [open_]


DAY = timedelta(days=1)
