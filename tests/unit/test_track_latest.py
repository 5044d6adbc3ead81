"""`track: latest` never rolls a pre-release to production unless asked
(`target.includePrereleases`)."""

from __future__ import annotations

import pytest

from ferryman.api.rollout import RolloutPhase, RolloutSpec
from ferryman.plan import machine, semver
from ferryman.plan.decision import VersionRecord
from unit.machine_sim import Sim, canary_spec


@pytest.mark.parametrize(
    ("text", "pre"),
    [
        ("2.1.0-rc.1", True),
        ("2.1.0-0", True),
        ("2.1.0-rc.1+build.5", True),
        ("2.1.0", False),
        ("2.1.0+build.5", False),
        ("latest", False),
    ],
)
def test_is_prerelease(text: str, pre: bool) -> None:
    assert semver.is_prerelease(text) is pre


def spec(include: bool | None = None) -> RolloutSpec:
    target: dict[str, object] = {"track": "latest"}
    if include is not None:
        target["includePrereleases"] = include
    return canary_spec([{"setWeight": 50}], target=target)


def records(*versions: str) -> tuple[VersionRecord, ...]:
    return tuple(VersionRecord(f"fraud-{v}", v) for v in versions)


@pytest.mark.parametrize("include", [None, False])
def test_pre_releases_are_skipped_by_default(include: bool | None) -> None:
    found = machine.resolve_target(spec(include), records("2.0.0", "2.1.0-rc.1"), [], "2.0.0")
    assert found == ("2.0.0", None)
    found = machine.resolve_target(spec(include), records("1.0.0", "2.1.0-rc.1"), [], None)
    assert found == ("1.0.0", None)


def test_pre_releases_are_picked_when_asked() -> None:
    assert machine.resolve_target(spec(True), records("2.0.0", "2.1.0-rc.1"), [], "2.0.0") == (
        "2.1.0-rc.1",
        None,
    )
    # and the release still beats its own pre-release
    assert machine.resolve_target(
        spec(True), records("2.0.0", "2.1.0-rc.1", "2.1.0"), [], "2.0.0"
    ) == ("2.1.0", None)


def test_only_pre_releases_is_invalid_and_says_why() -> None:
    target, problem = machine.resolve_target(spec(), records("2.1.0-rc.1"), [], None)
    assert target is None
    assert problem is not None and "skips pre-releases unless target.includePrereleases" in problem


def test_a_pinned_pre_release_is_served_as_pinned() -> None:
    pinned = canary_spec([{"setWeight": 50}], target={"version": "2.1.0-rc.1"})
    assert machine.resolve_target(pinned, records("2.0.0", "2.1.0-rc.1"), [], "2.0.0") == (
        "2.1.0-rc.1",
        None,
    )


def test_a_registered_release_candidate_does_not_start_a_rollout() -> None:
    sim = Sim(spec(), versions=["2.0.0"])
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    sim.versions.append("2.1.0-rc.1")
    sim.tick(30)
    assert sim.status.candidate_version is None and sim.status.stable_version == "2.0.0"
    sim.versions.append("2.1.0")
    sim.reconcile()
    assert sim.status.candidate_version == "2.1.0"


def test_equal_precedence_builds_pick_the_same_one_in_any_order() -> None:
    """1.3.0+build.5 and 1.3.0+build.6 have equal precedence: the pick must not depend
    on the order the index returns them in (it changes with every restart)."""
    import itertools

    from ferryman.plan import semver

    builds = ["1.2.0", "1.3.0+build.5", "1.3.0+build.6"]
    picks = {semver.highest(list(order)) for order in itertools.permutations(builds)}
    assert picks == {"1.3.0+build.6"}
