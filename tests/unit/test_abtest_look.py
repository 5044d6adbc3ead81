"""The abTest's look (``plan.experiment.look``): Prometheus counts in, the status's verdict
out, going on from the status it wrote last time exactly as ``sequential.evaluate`` goes on
from its own previous result (so a restart, which has only the status, loses nothing)."""

from __future__ import annotations

from datetime import UTC, datetime

from ferryman.analysis import sequential
from ferryman.api.rollout_experiment import ExperimentStatus, Objective
from ferryman.plan import experiment
from ferryman.plan.experiment import Counts

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OBJECTIVE = Objective.model_validate(
    {"successes": "s", "trials": "t", "direction": "HigherIsBetter", "mde": 0.05}
)


def test_without_data_the_look_does_not_count() -> None:
    for stable, candidate in [
        (Counts(None, None), Counts(100, 10)),
        (Counts(100, 10), Counts(100, float("nan"))),
        (Counts(-1, 0), Counts(100, 10)),
    ]:
        got = experiment.look(OBJECTIVE, stable, candidate, None, deadline=False, now=NOW)
        assert isinstance(got, str)


def test_looks_carried_in_status_match_the_verdicts_own_running_state() -> None:
    # Cumulative counts at each look: the candidate converts better (20% vs 12%).
    looks = [(n, round(0.12 * n), n, round(0.20 * n)) for n in (100, 200, 400, 800, 1600)]
    design = experiment.design(OBJECTIVE)
    previous: ExperimentStatus | None = None
    direct: sequential.Result | None = None
    for su, ss, cu, cs in looks:
        got = experiment.look(
            OBJECTIVE, Counts(su, ss), Counts(cu, cs), previous, deadline=False, now=NOW
        )
        assert isinstance(got, ExperimentStatus)
        direct = sequential.evaluate(
            sequential.Arm.per_user(users=su, successes=ss),
            sequential.Arm.per_user(users=cu, successes=cs),
            design,
            previous=direct,
        )
        assert got.outcome == direct.outcome.value
        assert got.p_value == direct.p_value
        assert (got.interval is None) == (direct.interval is None)
        if direct.interval is not None:
            assert got.interval == list(direct.interval)
        assert got.candidate.users == cu and got.candidate.successes == cs
        previous = ExperimentStatus.model_validate(got.model_dump(by_alias=True, mode="json"))
    assert previous is not None and previous.outcome == "CandidateWins"
    assert previous.looks == len(looks) and previous.unit == sequential.UNIT_USERS


def test_the_stage_spells_the_verdicts_outcomes() -> None:
    from ferryman.plan import experiment_stage as stage

    assert (stage.CANDIDATE_WINS, stage.STABLE_WINS, stage.NO_DIFFERENCE) == (
        sequential.Outcome.CANDIDATE_WINS,
        sequential.Outcome.STABLE_WINS,
        sequential.Outcome.NO_DIFFERENCE,
    )


def test_direction_and_deadline() -> None:
    lower = OBJECTIVE.model_copy(update={"direction": "LowerIsBetter"})
    got = experiment.look(
        lower, Counts(2000, 240), Counts(2000, 400), None, deadline=False, now=NOW
    )
    assert isinstance(got, ExperimentStatus) and got.outcome == "StableWins"
    same = experiment.look(
        OBJECTIVE, Counts(300, 36), Counts(300, 37), None, deadline=True, now=NOW
    )
    assert isinstance(same, ExperimentStatus) and same.outcome == "NoDifference"


def test_more_successes_than_users_count_as_every_user() -> None:
    got = experiment.look(
        OBJECTIVE, Counts(200.0, 20.0), Counts(150.2, 151.0), None, deadline=False, now=NOW
    )
    assert isinstance(got, ExperimentStatus)
    assert got.candidate.users == 150 and got.candidate.successes == 150


def test_kubectl_ferryman_status_shows_the_verdict_per_variant() -> None:
    from cases.api_cases import AB_TEST, rollout
    from ferryman.api.rollout import Rollout
    from ferryman.cli import render

    obj = rollout(name="fraud")
    obj["metadata"]["namespace"] = "risk"
    obj["spec"]["strategy"] = AB_TEST
    looks = [(1000, 100, 1000, 160), (2000, 200, 2000, 320)]
    previous: ExperimentStatus | None = None
    for su, ss, cu, cs in looks:
        got = experiment.look(
            OBJECTIVE, Counts(su, ss), Counts(cu, cs), previous, deadline=False, now=NOW
        )
        assert isinstance(got, ExperimentStatus)
        previous = got
    assert previous is not None
    obj["status"] = {
        "phase": "Progressing",
        "stableVersion": "1.2.0",
        "candidateVersion": "1.3.0",
        "experiment": previous.model_dump(by_alias=True, mode="json"),
    }
    text = render.status(Rollout.model_validate(obj))
    print(text)
    assert "(model fraud, abTest over gatewayAPI)" in text
    assert "A/B test:  CandidateWins; look 2" in text
    assert "counts users (one trial per user)" in text
    lines = text.splitlines()
    assert any(line.split()[-4:] == ["stable", "2000", "200", "10.00%"] for line in lines)
    assert any(line.split()[-4:] == ["candidate", "2000", "320", "16.00%"] for line in lines)
    assert "difference +6.00%, 95% CI [+" in text and "p-value " in text
    assert "users needed" in text
    assert "A/B users: 10.16% of users by x-user-id (requests without it: stable)" in text
