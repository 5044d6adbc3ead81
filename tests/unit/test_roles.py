"""ModelVersion roles, serving times and last outcomes (``plan.roles``), driven by the
state machine over the simulated cluster: each reconcile's status patches are applied to
the ModelVersions the way the API server merges them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import RolloutPhase, RolloutStatus
from ferryman.plan.roles import status_patches
from unit.machine_sim import T0, Sim, canary_spec, retarget
from unit.test_machine_strategies import ISTIO, shadow, spec_with


class Registry:
    """The model's ModelVersions as the API server holds them."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.status: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def objects(self) -> list[ModelVersion]:
        return [
            ModelVersion.model_validate(
                {
                    "metadata": {"name": f"fraud-{v}", "namespace": "risk"},
                    "spec": {
                        "model": "fraud",
                        "version": v,
                        "artifact": {"uri": "s3://m/x", "digest": "sha256:" + "0" * 64},
                        "serving": {"image": "srv"},
                    },
                    "status": self.status.get(f"fraud-{v}", {"phase": "Registered"}),
                }
            )
            for v in self.sim.versions
        ]

    def sync(self, status: RolloutStatus | None = None, *, gone: bool = False) -> None:
        patches = status_patches(
            "fraud",
            self.sim.spec,
            None if gone else status or self.sim.status,
            self.objects(),
            self.sim.now,
        )
        for name, patch in patches.items():
            self.writes.append((name, patch))
            merged = {**self.status.get(name, {"phase": "Registered"}), **patch}
            self.status[name] = {k: v for k, v in merged.items() if v is not None}

    def of(self, version: str) -> dict[str, Any]:
        return self.status.get(f"fraud-{version}", {})

    def step(self, seconds: float = 1.0, action: str | None = None) -> None:
        if action:
            self.sim.reconcile(action)
        else:
            self.sim.tick(seconds)
        self.sync()


def settled(spec: Any) -> tuple[Sim, Registry]:
    sim = Sim(spec)
    reg = Registry(sim)
    for _ in range(20):
        reg.step()
        if sim.status.phase == RolloutPhase.HEALTHY:
            return sim, reg
    raise AssertionError(sim.status)


def test_first_version_is_candidate_then_stable_and_promoted() -> None:
    sim = Sim(canary_spec([{"setWeight": 50}]))
    reg = Registry(sim)
    sim.reconcile()
    reg.sync()
    assert reg.of("1.0.0")["role"] == "candidate" and reg.of("1.0.0")["phase"] == "Serving"
    assert reg.of("1.0.0")["servedFrom"] == T0.isoformat()
    while sim.status.phase != RolloutPhase.HEALTHY:
        reg.step()
    mv = reg.of("1.0.0")
    assert mv["role"] == "stable" and mv["rollout"] == "fraud"
    assert mv["servedFrom"] == T0.isoformat()  # still the moment it started serving
    assert mv["lastOutcome"]["outcome"] == "Promoted"
    assert mv["lastOutcome"]["reason"] == "first version of the Rollout"


def test_canary_candidate_promoted_and_old_stable_retired() -> None:
    sim, reg = settled(canary_spec([{"setWeight": 50}, {"pause": {}}]))
    retarget(sim, "1.1.0")
    reg.step()
    reg.step()
    assert reg.of("1.1.0")["role"] == "candidate" and reg.of("1.1.0")["phase"] == "Serving"
    assert "lastOutcome" not in reg.of("1.1.0")
    reg.step(action="promote")
    while sim.status.stable_version != "1.1.0":
        reg.step()
    new, old = reg.of("1.1.0"), reg.of("1.0.0")
    assert new["role"] == "stable" and new["lastOutcome"]["outcome"] == "Promoted"
    assert new["lastOutcome"]["at"] == sim.now.isoformat()
    assert old["role"] == "none" and old["phase"] == "Retired" and "rollout" not in old
    assert old["servedUntil"] == sim.now.isoformat()
    assert old["lastOutcome"]["outcome"] == "Promoted"  # its own ending, unchanged


def test_rolled_back_candidate_gets_the_outcome_with_the_reason() -> None:
    sim, reg = settled(canary_spec([{"setWeight": 50}]))
    retarget(sim, "1.1.0")
    sim.broken.add("1.1.0")
    while sim.status.phase != RolloutPhase.ROLLED_BACK:
        reg.step(30)
    mv = reg.of("1.1.0")
    assert mv["role"] == "none" and mv["phase"] == "Retired"
    assert mv["lastOutcome"]["outcome"] == "RolledBack"
    assert mv["lastOutcome"]["reason"].startswith("progress deadline")
    assert mv["lastOutcome"]["reason"] == sim.status.history[-1].reason  # type: ignore[index]


def test_aborted_candidate_gets_aborted() -> None:
    sim, reg = settled(canary_spec([{"setWeight": 50}, {"pause": {}}]))
    retarget(sim, "1.1.0")
    reg.step()
    reg.step(action="abort")
    out = reg.of("1.1.0")["lastOutcome"]
    assert (out["outcome"], out["reason"]) == ("Aborted", "aborted by user")


def test_rejected_version_gets_rejected_without_ever_serving() -> None:
    spec = canary_spec([{"setWeight": 50}], gates={"offlineMetrics": [{"name": "auc", "min": 0.9}]})
    sim, reg = settled(spec)
    retarget(sim, "1.1.0")
    reg.step()
    assert sim.status.phase == RolloutPhase.REJECTED
    mv = reg.of("1.1.0")
    assert mv["lastOutcome"]["outcome"] == "Rejected" and mv["lastOutcome"]["reason"]
    assert mv["phase"] == "Registered" and mv.get("role") == "none"


def test_blue_green_candidate_is_preview_until_promoted() -> None:
    sim, reg = settled(spec_with({"blueGreen": {}}, ISTIO))
    retarget(sim, "1.1.0")
    reg.step()
    assert reg.of("1.1.0")["role"] == "preview"
    reg.step()
    assert sim.status.phase == RolloutPhase.PAUSED and reg.of("1.1.0")["role"] == "preview"
    reg.step(action="promote")
    assert reg.of("1.1.0")["role"] == "stable"


def test_shadow_candidate_is_shadow_then_candidate_on_canary_steps() -> None:
    sim, reg = settled(shadow("canary", steps=[{"setWeight": 25}, {"pause": {}}]))
    retarget(sim, "1.1.0")
    reg.step()
    reg.step()
    assert sim.route is not None and sim.route.mirror_percent == 50
    assert reg.of("1.1.0")["role"] == "shadow"
    reg.step(11)
    reg.step()
    assert sim.route.candidate_weight == 25
    assert reg.of("1.1.0")["role"] == "candidate"


def test_shadow_then_promote_stays_shadow_while_promotion_waits() -> None:
    sim, reg = settled(shadow("promote"))
    retarget(sim, "1.1.0")
    roles = set()
    while sim.status.stable_version != "1.1.0":
        reg.step(3)
        if sim.status.candidate_version:
            roles.add(reg.of("1.1.0")["role"])
    assert roles == {"shadow"}
    assert reg.of("1.1.0")["role"] == "stable"


def test_shadow_then_stop_ends_with_stopped() -> None:
    sim, reg = settled(shadow("stop"))
    retarget(sim, "1.1.0")
    reg.step()
    assert reg.of("1.1.0")["role"] == "shadow"
    while sim.status.candidate_version is not None:
        reg.step(3)
    mv = reg.of("1.1.0")
    assert mv["role"] == "none" and mv["phase"] == "Retired"
    assert mv["lastOutcome"]["outcome"] == "Stopped"


def test_nothing_written_when_every_status_is_already_right() -> None:
    _sim, reg = settled(canary_spec([{"setWeight": 50}]))
    reg.writes.clear()
    reg.step(5)
    reg.step(5)
    assert reg.writes == []


def test_invalid_rollout_changes_no_model_version() -> None:
    sim, reg = settled(canary_spec([{"setWeight": 50}]))
    invalid = sim.status.model_copy(update={"phase": RolloutPhase.INVALID, "stable_version": None})
    assert status_patches("fraud", sim.spec, invalid, reg.objects(), sim.now) == {}


def test_deleted_rollout_retires_its_versions() -> None:
    sim, reg = settled(canary_spec([{"setWeight": 50}]))
    sim.now += timedelta(seconds=7)
    reg.sync(gone=True)
    mv = reg.of("1.0.0")
    assert mv["role"] == "none" and mv["phase"] == "Retired" and "rollout" not in mv
    assert mv["servedUntil"] == sim.now.isoformat()
    assert mv["lastOutcome"]["outcome"] == "Promoted"  # kept


def test_an_older_history_entry_never_replaces_a_newer_outcome() -> None:
    sim, reg = settled(canary_spec([{"setWeight": 50}]))
    later = (sim.now + timedelta(hours=1)).isoformat()
    reg.status["fraud-1.0.0"]["lastOutcome"] = {"outcome": "Aborted", "reason": "x", "at": later}
    reg.writes.clear()
    reg.sync()
    assert reg.writes == [] and reg.of("1.0.0")["lastOutcome"]["outcome"] == "Aborted"
