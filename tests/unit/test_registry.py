"""Registry rules: who owns a model+version, and which deletions must wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ferryman.api.modelversion import ModelVersionPhase, ModelVersionStatus
from ferryman.api.rollout import RolloutStatus
from ferryman.plan import registry

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def reg(
    name: str,
    *,
    created: datetime | None = T0,
    deleting: bool = False,
    status: dict[str, object] | None = None,
    generation: int = 1,
    version: str = "1.3.0",
) -> registry.Registration:
    return registry.Registration(
        name=name,
        namespace="risk",
        uid=f"uid-{name}",
        model="fraud",
        version=version,
        created=created,
        generation=generation,
        deleting=deleting,
        status=ModelVersionStatus.model_validate(status or {}),
    )


def test_first_of_a_kind_is_registered() -> None:
    patch = registry.desired_status(reg("a"), [], now=T0)
    assert patch is not None
    assert patch["phase"] == "Registered"
    assert patch["observedGeneration"] == 1
    (cond,) = patch["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Registered", "True", "Registered")


def test_later_claim_is_a_duplicate_naming_the_original() -> None:
    first, second = reg("a"), reg("b", created=T0 + timedelta(seconds=5))
    patch = registry.desired_status(second, [first], now=T0)
    assert patch is not None and patch["phase"] == "Duplicate"
    cond = patch["conditions"][0]
    assert cond["status"] == "False" and cond["reason"] == "Duplicate"
    assert "already registered by ModelVersion a" in cond["message"]
    # The original is unaffected by the newcomer.
    assert registry.desired_status(first, [second], now=T0)["phase"] == "Registered"  # type: ignore[index]


def test_same_second_ties_are_broken_by_name_the_same_way_for_everyone() -> None:
    a, b = reg("a"), reg("b")
    assert registry.desired_status(a, [b], now=T0)["phase"] == "Registered"  # type: ignore[index]
    assert registry.desired_status(b, [a], now=T0)["phase"] == "Duplicate"  # type: ignore[index]


def test_when_the_original_is_deleted_the_oldest_remaining_takes_over() -> None:
    first = reg("a", deleting=True)
    second = reg("b", created=T0 + timedelta(seconds=5), status={"phase": "Duplicate"})
    third = reg("c", created=T0 + timedelta(seconds=9), status={"phase": "Duplicate"})
    assert registry.desired_status(second, [first, third], now=T0)["phase"] == "Registered"  # type: ignore[index]
    assert registry.desired_status(third, [first, second], now=T0)["phase"] == "Duplicate"  # type: ignore[index]


def test_no_write_when_status_already_says_so() -> None:
    patch = registry.desired_status(reg("a"), [], now=T0)
    assert patch is not None
    settled = reg("a", status=patch)
    assert registry.desired_status(settled, [], now=T0 + timedelta(minutes=1)) is None


def test_new_generation_is_observed_and_transition_time_kept() -> None:
    patch = registry.desired_status(reg("a"), [], now=T0)
    assert patch is not None
    later = registry.desired_status(
        reg("a", status=patch, generation=2), [], now=T0 + timedelta(minutes=1)
    )
    assert later is not None and later["observedGeneration"] == 2
    assert (
        later["conditions"][0]["lastTransitionTime"] == patch["conditions"][0]["lastTransitionTime"]
    )


def test_serving_phase_is_kept_by_registration() -> None:
    serving = reg("a", status={"phase": ModelVersionPhase.SERVING.value})
    patch = registry.desired_status(serving, [], now=T0)
    assert patch is not None and patch["phase"] == "Serving"


def test_deleting_object_is_left_alone() -> None:
    assert registry.desired_status(reg("a", deleting=True), [], now=T0) is None


def test_served_versions_follow_the_rollout_phase() -> None:
    progressing = RolloutStatus.model_validate(
        {
            "phase": "Progressing",
            "stableVersion": "1.2.0",
            "candidateVersion": "1.3.0",
            "previousStableVersion": "1.1.0",
        }
    )
    assert registry.served_versions(progressing) == {"1.2.0", "1.3.0"}
    baking = RolloutStatus.model_validate(
        {"phase": "Baking", "stableVersion": "1.3.0", "previousStableVersion": "1.2.0"}
    )
    assert registry.served_versions(baking) == {"1.3.0", "1.2.0"}
    assert registry.served_versions(RolloutStatus()) == frozenset()


def test_deletion_waits_only_for_a_rollout_serving_that_version() -> None:
    served = registry.ServedBy("fraud", "risk", "fraud", frozenset({"1.3.0"}))
    other_ns = registry.ServedBy("fraud", "other", "fraud", frozenset({"1.3.0"}))
    other_model = registry.ServedBy("churn", "risk", "churn", frozenset({"1.3.0"}))
    assert registry.deletion_blocker(reg("a"), [other_ns, other_model, served]) == "fraud"
    assert registry.deletion_blocker(reg("a", version="1.2.0"), [served]) is None
    assert registry.deletion_blocker(reg("a"), []) is None
    status = registry.deletion_blocked_status(reg("a"), "fraud", now=T0)
    (cond,) = status["conditions"]
    assert cond["type"] == "DeletionBlocked" and "Rollout fraud still serves" in cond["message"]
