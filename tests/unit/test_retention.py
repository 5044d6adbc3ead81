"""Retention (``plan.retention``, issue 17 §5): the newest N by registration order and the
recently served are kept; never the stable, the candidate, the target, the previous
stable while warm, one a Rollout serves, or a pinned one; GitOps-tracked ones are only
marked; deletion is opt-in. Examples, then properties over random registries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import RolloutPhase, RolloutSpec, RolloutStatus
from ferryman.api.rollout_retention import PIN
from ferryman.plan import retention
from unit.machine_sim import T0, canary_spec

ARGO = {"argocd.argoproj.io/tracking-id": "fraud:ferryman.dev/ModelVersion:risk/x"}


def mv(
    version: str,
    minute: int,
    *,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {
                "name": "fraud-" + version.replace(".", "-"),
                "namespace": "risk",
                "uid": f"uid-{version}",
                "resourceVersion": "7",
                "generation": 1,
                "creationTimestamp": (T0 + timedelta(minutes=minute)).isoformat(),
                "annotations": annotations or {},
                "labels": labels or {},
            },
            "spec": {
                "model": "fraud",
                "version": version,
                "artifact": {"uri": "s3://m/x", "digest": "sha256:" + "0" * 64},
                "serving": {"image": "srv"},
            },
            "status": status or {"phase": "Registered"},
        }
    )


def spec(target: str, **retention_: Any) -> RolloutSpec:
    return canary_spec([{"setWeight": 50}], retention=retention_).model_copy(
        update={
            "target": canary_spec([{"setWeight": 50}]).target.model_copy(update={"version": target})
        }
    )


NOW = T0 + timedelta(days=1)


def twelve() -> list[ModelVersion]:
    """1.0.0 .. 1.11.0, one a minute; 1.0.0 pinned, 1.1.0 tracked by Argo CD (annotation),
    1.2.0 by Argo CD's label tracking."""
    out = []
    for k in range(12):
        annotations = {PIN: "true"} if k == 0 else ARGO if k == 1 else None
        labels = {"app.kubernetes.io/instance": "fraud"} if k == 2 else None
        out.append(mv(f"1.{k}.0", k, annotations=annotations, labels=labels))
    return out


def test_twelve_versions_keep_five_the_right_seven_go_or_are_marked() -> None:
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="1.11.0")
    plan = retention.decide("fraud", spec("1.11.0", keepLast=5, delete=True), status, twelve(), NOW)
    assert plan.kept == {
        "fraud-1-0-0": "pinned",
        "fraud-1-7-0": "newest",
        "fraud-1-8-0": "newest",
        "fraud-1-9-0": "newest",
        "fraud-1-10-0": "newest",
        "fraud-1-11-0": "stable",
    }
    gone = {x.version: x for x in plan.expired}
    assert sorted(gone, key=lambda v: int(v.split(".")[1])) == [f"1.{k}.0" for k in range(1, 7)]
    assert [v for v, x in gone.items() if x.delete] == ["1.3.0", "1.4.0", "1.5.0", "1.6.0"]
    for v, tracked in (("1.1.0", "annotation argocd"), ("1.2.0", "label app.kubernetes.io")):
        x = gone[v]
        assert not x.delete and x.event and x.gitops and x.gitops.startswith(tracked)
        assert x.patch is not None and x.patch["phase"] == "Retired"
        assert "remove it from Git" in x.message
        (cond,) = x.patch["conditions"]
        assert (cond["type"], cond["status"], cond["reason"]) == (
            "Expired",
            "True",
            "ManagedByGitOps",
        )
    assert gone["1.3.0"].resource_version == "7" and gone["1.3.0"].uid == "uid-1.3.0"


def test_without_delete_every_expired_version_is_marked_once() -> None:
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="1.11.0")
    s = spec("1.11.0", keepLast=5)
    plan = retention.decide("fraud", s, status, twelve(), NOW)
    assert len(plan.expired) == 6 and not any(x.delete for x in plan.expired)
    assert "retention.delete is false" in plan.expired[-1].message
    # The marks written: deciding again writes nothing and posts nothing.
    marked = []
    for m in twelve():
        x = next((x for x in plan.expired if x.name == m.metadata.name), None)
        if x is not None and x.patch is not None:
            m = m.model_copy(
                update={"status": m.status.model_validate({**x.patch, "observedGeneration": 1})}
            )
        marked.append(m)
    again = retention.decide("fraud", s, status, marked, NOW + timedelta(minutes=5))
    assert len(again.expired) == 6
    assert all(x.patch is None and not x.event for x in again.expired)
    # Pinned afterwards: the mark is lifted, and it is Registered again (never served).
    pinned = [
        m.model_copy(
            update={"metadata": m.metadata.model_copy(update={"annotations": {PIN: "yes"}})}
        )
        if m.spec.version == "1.4.0"
        else m
        for m in marked
    ]
    lifted = retention.decide("fraud", s, status, pinned, NOW)
    restore = lifted.restored["fraud-1-4-0"]
    assert restore["phase"] == "Registered"
    assert [(c["type"], c["status"], c["reason"]) for c in restore["conditions"]] == [
        ("Expired", "False", "Retained")
    ]
    # spec.retention removed: every mark is lifted, nothing expires.
    gone = s.model_copy(update={"retention": None})
    lifted = retention.decide("fraud", gone, status, marked, NOW)
    assert lifted.expired == [] and sorted(lifted.restored) == sorted(x.name for x in plan.expired)
    assert retention.decide("fraud", gone, status, twelve(), NOW).restored == {}


def test_never_the_stable_candidate_target_or_warm_previous_stable() -> None:
    mvs = [mv(f"2.{k}.0", k) for k in range(8)]
    status = RolloutStatus(
        phase=RolloutPhase.PROGRESSING,
        stable_version="2.1.0",
        candidate_version="2.2.0",
        previous_stable_version="2.0.0",
        scale_down_at=NOW + timedelta(minutes=1),
    )
    s = spec("2.3.0", keepLast=1, delete=True)
    plan = retention.decide("fraud", s, status, mvs, NOW)
    assert plan.kept == {
        "fraud-2-0-0": "warm",
        "fraud-2-1-0": "stable",
        "fraud-2-2-0": "candidate",
        "fraud-2-3-0": "target",
        "fraud-2-7-0": "newest",
    }
    # Once the previous stable is scaled down, it may go; while baking it is warm.
    later = retention.decide("fraud", s, status, mvs, NOW + timedelta(minutes=2))
    assert "fraud-2-0-0" not in later.kept
    baking = status.model_copy(update={"phase": RolloutPhase.BAKING, "scale_down_at": None})
    assert retention.decide("fraud", s, baking, mvs, NOW).kept["fraud-2-0-0"] == "warm"
    # An Invalid Rollout (it may not own the model) expires nothing.
    invalid = status.model_copy(update={"phase": RolloutPhase.INVALID})
    assert retention.decide("fraud", s, invalid, mvs, NOW).expired == []


def test_recently_served_versions_are_kept_until_the_window_lapses() -> None:
    served = {
        "phase": "Retired",
        "servingHistory": [
            {
                "rollout": "fraud",
                "servedFrom": (NOW - timedelta(days=9)).isoformat(),
                "servedUntil": (NOW - timedelta(days=2)).isoformat(),
                "roles": ["stable"],
                "ended": "Replaced",
            }
        ],
    }
    serving_elsewhere = {"phase": "Serving", "rollout": "other"}
    mvs = [mv("3.0.0", 0, status=served), mv("3.1.0", 1, status=serving_elsewhere)]
    mvs += [mv("3.2.0", 2), mv("3.3.0", 3)]
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="3.3.0")
    plan = retention.decide(
        "fraud", spec("3.3.0", keepLast=1, keepServedWithinDays=3), status, mvs, NOW
    )
    assert plan.kept == {"fraud-3-0-0": "recent", "fraud-3-1-0": "serving", "fraud-3-3-0": "stable"}
    assert plan.recheck_at == NOW + timedelta(days=1)
    assert [x.version for x in plan.expired] == ["3.2.0"]
    short = retention.decide(
        "fraud", spec("3.3.0", keepLast=1, keepServedWithinDays=1), status, mvs, NOW
    )
    assert "fraud-3-0-0" not in short.kept and short.recheck_at is None


def test_registration_order_breaks_same_second_ties_by_semver() -> None:
    mvs = [mv(f"4.{k}.0", 0) for k in (10, 9, 2, 11, 1)]
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="4.1.0")
    plan = retention.decide("fraud", spec("4.1.0", keepLast=2), status, mvs, NOW)
    assert {n for n, why in plan.kept.items() if why == "newest"} == {
        "fraud-4-10-0",
        "fraud-4-11-0",
    }


def test_duplicates_and_deleting_versions_are_left_alone() -> None:
    dup = mv("5.0.0", 0, status={"phase": "Duplicate"})
    going = mv("5.1.0", 1).model_copy()
    going.metadata.deletion_timestamp = NOW
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="5.2.0")
    plan = retention.decide(
        "fraud", spec("5.2.0", keepLast=1, delete=True), status, [dup, going, mv("5.2.0", 2)], NOW
    )
    assert plan.expired == [] and plan.kept == {"fraud-5-2-0": "stable"}


@st.composite
def registries(draw: st.DrawFn) -> tuple[list[ModelVersion], RolloutStatus, RolloutSpec]:
    n = draw(st.integers(1, 25))
    mvs = []
    for k in range(n):
        annotations: dict[str, str] = {}
        if draw(st.booleans()) and draw(st.booleans()):
            annotations[PIN] = draw(st.sampled_from(["true", "false", "x"]))
        if draw(st.integers(0, 4)) == 0:
            annotations.update(ARGO)
        labels = {"kustomize.toolkit.fluxcd.io/name": "ml"} if draw(st.integers(0, 6)) == 0 else {}
        days = draw(st.none() | st.integers(0, 30))
        status: dict[str, Any] = {"phase": "Registered"}
        if days is not None:
            status = {"phase": "Retired", "servedUntil": (NOW - timedelta(days=days)).isoformat()}
        if draw(st.integers(0, 9)) == 0:
            status = {"phase": "Duplicate"}
        minute = draw(st.integers(0, 5))  # many same-time registrations
        mvs.append(mv(f"6.{k}.0", minute, annotations=annotations, labels=labels, status=status))
    versions = [m.spec.version for m in mvs]
    pick = st.none() | st.sampled_from(versions)
    rollout_status = RolloutStatus(
        phase=draw(
            st.sampled_from([RolloutPhase.HEALTHY, RolloutPhase.PROGRESSING, RolloutPhase.BAKING])
        ),
        stable_version=draw(pick),
        candidate_version=draw(pick),
        previous_stable_version=draw(pick),
        scale_down_at=NOW + timedelta(seconds=draw(st.integers(-100, 100))),
    )
    s = spec(
        draw(st.sampled_from(versions)),
        keepLast=draw(st.integers(1, 8)),
        keepServedWithinDays=draw(st.integers(0, 10)),
        delete=draw(st.booleans()),
    )
    return mvs, rollout_status, s


@settings(max_examples=150, deadline=None)
@given(registries())
def test_properties_of_every_retention_plan(
    case: tuple[list[ModelVersion], RolloutStatus, RolloutSpec],
) -> None:
    mvs, status, s = case
    assert s.retention is not None
    plan = retention.decide("fraud", s, status, mvs, NOW)
    live = [m for m in mvs if m.status.phase != "Duplicate"]
    expired = {x.name: x for x in plan.expired}
    # Every live version is decided exactly once; duplicates never.
    assert set(plan.kept) | set(expired) == {m.metadata.name for m in live}
    assert not set(plan.kept) & set(expired)
    # The keepLast newest by registration order are kept.
    order = sorted(live, key=retention.registration_key)
    assert all(m.metadata.name in plan.kept for m in order[-s.retention.keep_last :])
    warm = status.phase == RolloutPhase.BAKING or (
        status.scale_down_at is not None and status.scale_down_at > NOW
    )
    protected = {status.stable_version, status.candidate_version, s.target.version}
    if warm:
        protected.add(status.previous_stable_version)
    for m in live:
        name = m.metadata.name
        if m.spec.version in protected or retention.pinned(m):
            assert name in plan.kept
        if name in expired:
            x = expired[name]
            tracked = retention.gitops_tracking(m)
            assert x.delete == (s.retention.delete and tracked is None)
            if not x.delete:
                assert x.patch is not None and x.patch["phase"] == "Retired"
                (cond,) = x.patch["conditions"]
                assert (cond["type"], cond["status"]) == ("Expired", "True")


def test_a_version_whose_deployment_exists_is_kept_though_no_status_names_it() -> None:
    """KeepStable left 1.0.0's Deployment serving when its Rollout was deleted: its
    ModelVersion is Retired (the Rollout is gone) and past keepLast, yet it is kept."""
    old = mv("1.0.0", 0, status={"phase": "Retired", "servedUntil": T0.isoformat()})
    mvs = [old, mv("1.1.0", 1), mv("1.2.0", 2)]
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="1.2.0")
    plan = retention.decide(
        "fraud-next",
        spec("1.2.0", keepLast=1, delete=True),
        status,
        mvs,
        NOW,
        deployed={"fraud-1-0-0"},
    )
    assert plan.kept == {"fraud-1-0-0": "deployed", "fraud-1-2-0": "stable"}
    assert [x.name for x in plan.expired] == ["fraud-1-1-0"]


def test_argo_cds_documented_custom_tracking_label_is_only_marked() -> None:
    """Argo CD's resource-tracking docs configure ``application.instanceLabelKey:
    argocd.argoproj.io/instance`` (to stay clear of Helm's app.kubernetes.io/instance):
    a ModelVersion so labelled is Argo CD's, and deleted it would be re-created."""
    tracked = mv("1.0.0", 0, labels={"argocd.argoproj.io/instance": "fraud"})
    status = RolloutStatus(phase=RolloutPhase.HEALTHY, stable_version="1.1.0")
    plan = retention.decide(
        "fraud", spec("1.1.0", keepLast=1, delete=True), status, [tracked, mv("1.1.0", 1)], NOW
    )
    (x,) = plan.expired
    assert not x.delete and x.gitops == "label argocd.argoproj.io/instance"


def test_track_latest_keeps_the_version_it_tracks_though_a_hotfix_registered_later() -> None:
    """``target: {track: latest}`` asks for 2.0.0 (highest semver) while the Rollout is
    still busy with candidate 1.2.0; hotfix 1.5.1, registered after 2.0.0, is the newest
    by registration. keepLast 1 must not delete 2.0.0, the version the Rollout goes to
    next (what Git asks for, as a pinned target.version is)."""
    mvs = [mv("1.0.0", 0), mv("1.2.0", 1), mv("2.0.0", 2), mv("1.5.1", 3)]
    tracking = canary_spec(
        [{"setWeight": 50}], target={"track": "latest"}, retention={"keepLast": 1, "delete": True}
    )
    status = RolloutStatus(
        phase=RolloutPhase.PAUSED, stable_version="1.0.0", candidate_version="1.2.0"
    )
    plan = retention.decide("fraud", tracking, status, mvs, NOW)
    assert plan.kept["fraud-2-0-0"] == "target"
    assert [x.name for x in plan.expired] == []
