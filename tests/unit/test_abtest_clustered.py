"""The abTest objective counting requests clustered within users (``unit: requests``, the
delta method; issue 16 §1): the look reads the six per-user sums, gives the verdict
``sequential.evaluate`` gives on ``Arm.clustered``, says which unit it counts; the
application's counter recipe (``harness.abclusters``) yields exactly those sums; and a
simulation through the look itself (users with several correlated requests each, read at
every look) shows why the unit matters: the same requests fed as if each were a user
(``unit: users``) declare a winner between identical models far more often than alpha,
the delta method does not."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import stats

from cases.api_cases import AB_DELTA, AB_OBJECTIVE
from ferryman.analysis import sequential
from ferryman.api.rollout_experiment import ExperimentStatus, Objective, Unit
from ferryman.plan import experiment
from ferryman.plan.experiment import Counts
from harness import abclusters

NOW = datetime(2026, 12, 1, tzinfo=UTC)
REQUESTS = Objective.model_validate(
    {**AB_OBJECTIVE, "mde": 0.02, "unit": "requests", "deltaMethod": AB_DELTA}
)
USERS = Objective.model_validate({**AB_OBJECTIVE, "mde": 0.02})


def counts(sums: Mapping[str, float | None]) -> Counts:
    return Counts(
        users=sums["users"],
        successes=sums["successes"],
        requests=sums["requests"],
        requests_squared=sums["requests_squared"],
        successes_squared=sums["successes_squared"],
        cross=sums["requests_times_successes"],
    )


def arm(sums: Mapping[str, float]) -> sequential.Arm:
    return sequential.Arm.clustered(
        users=int(sums["users"]),
        trials=sums["requests"],
        successes=sums["successes"],
        trials_sq=sums["requests_squared"],
        successes_sq=sums["successes_squared"],
        cross=sums["requests_times_successes"],
    )


def test_the_api_takes_unit_requests_with_the_delta_methods_sums() -> None:
    assert USERS.unit == Unit.USERS and USERS.delta_method is None
    assert REQUESTS.unit == Unit.REQUESTS and REQUESTS.delta_method is not None
    assert REQUESTS.delta_method.trials_times_successes == AB_DELTA["trialsTimesSuccesses"]


def test_the_applications_counter_increments_sum_to_the_per_user_sums() -> None:
    rng = random.Random(16)
    app = abclusters.PerUserSums()
    final: dict[str, list[int]] = {}
    for _ in range(5000):  # requests of 400 users in random order, correlated successes
        user = f"u{rng.randrange(400)}"
        p = 0.05 + 0.5 * (int(user[1:]) % 4 == 0)
        success = rng.random() < p
        app.request(user, success=success)
        x, y = final.setdefault(user, [0, 0])
        final[user] = [x + 1, y + int(success)]
    assert app.totals == abclusters.direct([(x, y) for x, y in final.values()])


def test_the_look_counts_requests_with_the_delta_method() -> None:
    # Cumulative sums at three looks: users with 1-5 requests, the candidate better.
    rng = np.random.default_rng(7)

    def grow(n: int, p: float) -> list[tuple[int, int]]:
        x = 1 + rng.poisson(2, n)
        y = rng.binomial(x, rng.beta(p * 4, (1 - p) * 4, n))
        return list(zip(x.tolist(), y.tolist(), strict=True))

    stable: list[tuple[int, int]] = []
    candidate: list[tuple[int, int]] = []
    previous: ExperimentStatus | None = None
    direct: sequential.Result | None = None
    for _ in range(3):
        stable += grow(1500, 0.10)
        candidate += grow(1500, 0.16)
        s, c = abclusters.direct(stable), abclusters.direct(candidate)
        got = experiment.look(REQUESTS, counts(s), counts(c), previous, deadline=False, now=NOW)
        assert isinstance(got, ExperimentStatus), got
        direct = sequential.evaluate(arm(s), arm(c), experiment.design(REQUESTS), previous=direct)
        assert (got.outcome, got.p_value) == (direct.outcome.value, direct.p_value)
        assert got.interval == (list(direct.interval) if direct.interval else None)
        assert (
            got.unit == sequential.UNIT_REQUESTS == "requests clustered within users (delta method)"
        )
        assert got.candidate.trials == c["requests"] and got.candidate.users == c["users"]
        assert got.candidate.rate == c["successes"] / c["requests"]
        previous = ExperimentStatus.model_validate(got.model_dump(by_alias=True, mode="json"))
    assert previous is not None and previous.outcome == "CandidateWins"


def test_unit_requests_counted_once_each_still_says_requests() -> None:
    """Users who each sent one request are still counted as requests (the objective says
    so), not as users (``Arm.unit`` would infer it from the sums)."""
    one = {k: 500.0 for k in abclusters.NAMES} | {
        "successes": 50.0,
        "successes_squared": 50.0,
        "requests_times_successes": 50.0,
    }
    got = experiment.look(REQUESTS, counts(one), counts(one), None, deadline=False, now=NOW)
    assert isinstance(got, ExperimentStatus) and got.unit == sequential.UNIT_REQUESTS


def test_incomplete_or_impossible_sums_do_not_count() -> None:
    good: dict[str, float] = {
        "users": 200,
        "requests": 600,
        "successes": 60,
        "requests_squared": 2200,
        "successes_squared": 90,
        "requests_times_successes": 250,
    }
    missing = counts({**good, "requests_squared": None})
    got = experiment.look(REQUESTS, counts(good), missing, None, deadline=False, now=NOW)
    assert got == "no data for the candidate's requestsSquared yet"
    # sum x^2 below (sum x)^2 / n: no users have these counts (scraped at other instants)
    bad = counts({**good, "requests_squared": 1000})
    got = experiment.look(REQUESTS, bad, counts(good), None, deadline=False, now=NOW)
    assert isinstance(got, str) and "stable's per-user sums are not consistent" in got
    nan = counts({**good, "requests_times_successes": float("nan")})
    got = experiment.look(REQUESTS, counts(good), nan, None, deadline=False, now=NOW)
    assert isinstance(got, str) and "not usable" in got


# The simulation: A/A runs, users with 1 + Poisson(4) requests each and a per-user success
# propensity Beta(0.2, 1.8) (mean 0.10, intra-user correlation 1 / (2 + 1) = 1/3), read at
# every look through ``plan.experiment.look``.
RUNS = int(os.environ.get("FERRYMAN_CLUSTER_SIM_RUNS", "400"))
LOOKS = 8
USERS_PER_LOOK = 150  # per arm
ALPHA = 0.05


def sums_at_looks(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Cumulative per-user sums of one arm at each look, shape (RUNS, LOOKS)."""
    shape = (RUNS, LOOKS, USERS_PER_LOOK)
    x = 1 + rng.poisson(4, shape)
    y = rng.binomial(x, rng.beta(0.2, 1.8, shape))
    per_look = {
        "users": np.full(shape, 1),
        "requests": x,
        "successes": y,
        "requests_squared": x * x,
        "successes_squared": y * y,
        "requests_times_successes": x * y,
    }
    return {k: v.sum(-1).cumsum(-1).astype(float) for k, v in per_look.items()}


def rejects(objective: Objective, a: dict[str, Any], b: dict[str, Any], run: int) -> bool:
    """Whether any look of this A/A run declares a winner."""
    previous: ExperimentStatus | None = None
    for look in range(LOOKS):
        s = {k: v[run, look] for k, v in a.items()}
        c = {k: v[run, look] for k, v in b.items()}
        if objective.unit == Unit.REQUESTS:
            got = experiment.look(
                objective, counts(s), counts(c), previous, deadline=False, now=NOW
            )
        else:  # every request taken for a user of its own: the naive per-request test
            naive_s = Counts(s["requests"], s["successes"])
            naive_c = Counts(c["requests"], c["successes"])
            got = experiment.look(objective, naive_s, naive_c, previous, deadline=False, now=NOW)
        assert isinstance(got, ExperimentStatus), got
        if got.outcome in ("CandidateWins", "StableWins"):
            return True
        previous = got
    return False


def test_aa_clustered_requests_fpr_naive_per_request_vs_delta_method() -> None:
    rng = np.random.default_rng(1616)
    a, b = sums_at_looks(rng), sums_at_looks(rng)
    bound = stats.binom.ppf(0.999, RUNS, ALPHA)
    found = {}
    for label, objective in (("delta method", REQUESTS), ("naive per request", USERS)):
        k = sum(rejects(objective, a, b, run) for run in range(RUNS))
        ci = stats.binomtest(k, RUNS).proportion_ci(confidence_level=0.95, method="exact")
        print(
            f"\nA/A, {LOOKS} looks x {USERS_PER_LOOK} users per arm, ~5 correlated requests "
            f"each, alpha {ALPHA}, {label}: {k}/{RUNS} = {k / RUNS:.4f} "
            f"(95% CI {ci.low:.4f}-{ci.high:.4f})"
        )
        found[label] = k
    assert found["delta method"] <= bound
    assert found["naive per request"] > bound  # the inflation the delta method removes


def test_kubectl_ferryman_status_shows_the_unit_and_the_requests() -> None:
    from cases.api_cases import AB_TEST, rollout
    from ferryman.api.rollout import Rollout
    from ferryman.cli import render

    obj = rollout(name="fraud")
    obj["metadata"]["namespace"] = "risk"
    obj["spec"]["strategy"] = {
        "abTest": {**AB_TEST["abTest"], "objective": REQUESTS.model_dump(by_alias=True)}
    }
    s = {"users": 1000, "requests": 3000, "successes": 300, "requests_squared": 11000}
    s |= {"successes_squared": 500, "requests_times_successes": 1500}
    c = s | {"successes": 420, "successes_squared": 700, "requests_times_successes": 2000}
    got = experiment.look(REQUESTS, counts(s), counts(c), None, deadline=False, now=NOW)
    assert isinstance(got, ExperimentStatus)
    obj["status"] = {
        "phase": "Progressing",
        "stableVersion": "1.2.0",
        "candidateVersion": "1.3.0",
        "experiment": got.model_dump(by_alias=True, mode="json"),
    }
    text = render.status(Rollout.model_validate(obj))
    print(text)
    assert "counts requests clustered within users (delta method)" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["variant", "users", "requests", "successes", "rate"] in [ln[-5:] for ln in lines]
    assert ["stable", "1000", "3000", "300", "10.00%"] in [ln[-5:] for ln in lines]
    assert ["candidate", "1000", "3000", "420", "14.00%"] in [ln[-5:] for ln in lines]


def test_counts_that_fell_since_the_last_look_do_not_count() -> None:
    """The objective's queries sum counters since the experiment began; a replica that
    restarts resets its counters, and the sums fall. Such a look is a smaller, different
    sample: fed to the running p-value and interval of the earlier looks (kept as their
    minimum and intersection) it would test a second sequence under the first one's
    guarantee. It does not count, and says why; looks count again once the counts are
    back above the last counted look's (review9 F5)."""
    good: dict[str, float] = {
        "users": 2000,
        "requests": 6000,
        "successes": 600,
        "requests_squared": 22000,
        "successes_squared": 900,
        "requests_times_successes": 2500,
    }
    first = experiment.look(REQUESTS, counts(good), counts(good), None, deadline=False, now=NOW)
    assert isinstance(first, ExperimentStatus)
    fell = {k: v * 0.6 for k, v in good.items()}
    got = experiment.look(REQUESTS, counts(fell), counts(good), first, deadline=False, now=NOW)
    assert isinstance(got, str) and "fell since the last look" in got, got
    assert "stable" in got
    got = experiment.look(
        USERS, Counts(1200, 120), Counts(2000, 200), first, deadline=False, now=NOW
    )
    assert isinstance(got, str) and "fell since the last look" in got, got
    grown = {k: v * 1.1 for k, v in good.items()}
    got = experiment.look(REQUESTS, counts(grown), counts(grown), first, deadline=False, now=NOW)
    assert isinstance(got, ExperimentStatus)
