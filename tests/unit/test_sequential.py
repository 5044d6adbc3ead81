"""The A/B verdict's formulas against closed forms and independent implementations:

- the mixture likelihood ratio against a numerical integral of the Gaussian likelihood
  ratio over the N(0, tau^2) mixing density (scipy.integrate.quad), which is its
  definition in Johari et al. (2022);
- the confidence sequence's edge: the ratio at ``difference +- radius`` is exactly
  ``1 / alpha`` (Howard et al. 2021's normal-mixture boundary is that level set);
- the delta-method variance against the per-user linearization computed from raw data,
  and against the binomial ``p (1 - p) / n`` for one trial per user;
- the fixed-horizon sample size against statsmodels' NormalIndPower;
- decisions, estimates and intervals against PyPI ``savvi`` (Lindon et al.'s anytime-valid
  linear model t-test, a different mixture over the same question), on per-user data.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from savvi.linear_regression import LinearRegression
from scipy import integrate, stats
from statsmodels.stats.power import NormalIndPower

from ferryman.analysis import sequential
from ferryman.analysis.sequential import Arm, Design, Direction, Outcome

DESIGN = Design(direction=Direction.HIGHER, mde=0.02)


@pytest.mark.parametrize(
    ("diff", "var", "tau2"), [(0.0, 1e-4, 4e-4), (0.03, 1e-4, 4e-4), (-0.01, 2e-5, 1e-4)]
)
def test_mixture_ratio_equals_its_integral_definition(diff: float, var: float, tau2: float):
    sd = math.sqrt(var)

    def integrand(theta: float) -> float:
        ratio = stats.norm.pdf(diff, theta, sd) / stats.norm.pdf(diff, 0, sd)
        return float(ratio * stats.norm.pdf(theta, 0, math.sqrt(tau2)))

    width = 12 * math.sqrt(tau2)
    expected, _ = integrate.quad(integrand, -width, width, points=[diff], limit=200)
    got = math.exp(float(sequential.log_mixture_ratio(diff, var, tau2)))
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_interval_edge_is_where_the_ratio_reaches_one_over_alpha(alpha: float) -> None:
    var, tau2 = 3e-5, 4e-4
    r = float(sequential.radius(var, tau2, alpha))
    for edge in (r, -r):
        assert float(sequential.log_mixture_ratio(edge, var, tau2)) == pytest.approx(
            math.log(1 / alpha)
        )


def test_delta_method_variance_is_the_linearized_per_user_variance() -> None:
    rng = np.random.default_rng(3)
    x = 1 + rng.poisson(3, 5000)
    y = rng.binomial(x, rng.beta(1, 9, 5000))
    arm = Arm.clustered(
        users=len(x),
        trials=float(x.sum()),
        successes=float(y.sum()),
        trials_sq=float((x * x).sum()),
        successes_sq=float((y * y).sum()),
        cross=float((x * y).sum()),
    )
    r = y.sum() / x.sum()
    linearized = (y - r * x) / x.mean()
    assert arm.variance == pytest.approx(np.var(linearized) / len(x), rel=1e-9)
    assert arm.unit == sequential.UNIT_REQUESTS


def test_one_trial_per_user_is_the_binomial_variance() -> None:
    arm = Arm.per_user(users=1000, successes=137)
    assert arm.variance == pytest.approx(0.137 * 0.863 / 1000, rel=1e-12)
    assert arm.unit == sequential.UNIT_USERS
    assert arm.rate == 0.137


def test_fixed_horizon_size_matches_statsmodels() -> None:
    p = 0.1
    per_user = 2 * p * (1 - p)
    ours = sequential.users_fixed_horizon(per_user, DESIGN)
    effect = DESIGN.mde / math.sqrt(p * (1 - p))
    theirs = NormalIndPower().solve_power(effect_size=effect, alpha=DESIGN.alpha, power=0.8)
    assert ours == pytest.approx(theirs, rel=2e-3)  # statsmodels adds the far tail


def test_sequential_size_meets_the_power_it_promises_at_that_size() -> None:
    """At ``users_for_power`` users the z-statistic of a true MDE difference clears the
    boundary with probability ``power`` (the lower bound the docstring argues)."""
    per_user = 0.18
    n = sequential.users_for_power(per_user, DESIGN)
    v = per_user / n
    boundary = float(sequential.radius(v, DESIGN.tau2, DESIGN.alpha))
    assert stats.norm.cdf((DESIGN.mde - boundary) / math.sqrt(v)) == pytest.approx(0.8)
    assert n > sequential.users_fixed_horizon(per_user, DESIGN)


@pytest.mark.parametrize(
    ("direction", "stable", "candidate", "outcome"),
    [
        (Direction.HIGHER, 200, 300, Outcome.CANDIDATE_WINS),
        (Direction.HIGHER, 300, 200, Outcome.STABLE_WINS),
        (Direction.LOWER, 300, 200, Outcome.CANDIDATE_WINS),
        (Direction.LOWER, 200, 300, Outcome.STABLE_WINS),
        (Direction.HIGHER, 200, 215, Outcome.UNDECIDED),
    ],
)
def test_outcomes_follow_the_direction(direction, stable, candidate, outcome) -> None:
    design = Design(direction=direction, mde=0.02)
    r = sequential.evaluate(
        Arm.per_user(users=2000, successes=stable),
        Arm.per_user(users=2000, successes=candidate),
        design,
    )
    assert r.outcome == outcome, r
    assert r.difference == pytest.approx((candidate - stable) / 2000)
    assert r.interval is not None and r.difference is not None
    assert r.interval[0] < r.difference < r.interval[1]
    assert (r.p_value <= design.alpha) == (outcome != Outcome.UNDECIDED)
    if r.p_value < 1:
        assert r.e_value == pytest.approx(1 / r.p_value)


def test_no_verdict_before_min_users_and_no_difference_once_the_mde_is_ruled_out() -> None:
    early = sequential.evaluate(
        Arm.per_user(users=99, successes=0), Arm.per_user(users=500, successes=400), DESIGN
    )
    assert early.outcome == Outcome.UNDECIDED and early.interval is None
    assert "99 users" in early.message
    big = Arm.per_user(users=400_000, successes=40_000)
    same = sequential.evaluate(big, Arm.per_user(users=400_000, successes=40_100), DESIGN)
    assert same.outcome == Outcome.NO_DIFFERENCE and "ruled out" in same.message
    assert same.users_needed == 0


def test_deadline_turns_undecided_into_no_difference_and_needed_users_count_down() -> None:
    a, b = Arm.per_user(users=1000, successes=100), Arm.per_user(users=1000, successes=110)
    now = sequential.evaluate(a, b, DESIGN)
    assert now.outcome == Outcome.UNDECIDED
    assert now.users_needed is not None and now.users_needed > 0
    by_deadline = sequential.evaluate(a, b, DESIGN, previous=now, deadline=True)
    assert by_deadline.outcome == Outcome.NO_DIFFERENCE and "deadline" in by_deadline.message
    capped = Design(direction=Direction.HIGHER, mde=0.02, max_users=1000)
    assert sequential.evaluate(a, b, capped).outcome == Outcome.NO_DIFFERENCE
    later = sequential.evaluate(
        Arm.per_user(users=2000, successes=200), Arm.per_user(users=2000, successes=220), DESIGN
    )
    assert later.users_needed is not None and later.users_needed < now.users_needed


def test_p_value_is_a_running_minimum_and_the_interval_a_running_intersection() -> None:
    first = sequential.evaluate(
        Arm.per_user(users=1000, successes=100), Arm.per_user(users=1000, successes=125), DESIGN
    )
    second = sequential.evaluate(
        Arm.per_user(users=2000, successes=200),
        Arm.per_user(users=2000, successes=200),
        DESIGN,
        previous=first,
    )
    fresh = sequential.evaluate(
        Arm.per_user(users=2000, successes=200), Arm.per_user(users=2000, successes=200), DESIGN
    )
    assert second.p_value == first.p_value < fresh.p_value
    assert first.interval and second.interval and fresh.interval
    assert second.interval[0] == max(first.interval[0], fresh.interval[0])
    assert second.interval[1] == min(first.interval[1], fresh.interval[1])


def test_no_variation_is_undecided_not_a_crash() -> None:
    r = sequential.evaluate(
        Arm.per_user(users=500, successes=0), Arm.per_user(users=500, successes=0), DESIGN
    )
    assert r.outcome == Outcome.UNDECIDED and r.users_needed is None


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Arm.per_user(users=10, successes=11),
        lambda: Arm.clustered(
            users=10, trials=10, successes=1, trials_sq=5, successes_sq=1, cross=1
        ),
        lambda: Design(direction=Direction.HIGHER, mde=0),
        lambda: Design(direction=Direction.HIGHER, mde=0.1, alpha=1.5),
    ],
)
def test_impossible_inputs_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def savvi_run(y_a: np.ndarray, y_b: np.ndarray, every: int) -> LinearRegression:
    """savvi's anytime-valid regression of y on [1, variant], fed user by user
    (alternating arms) and read every ``every`` users per arm."""
    model = LinearRegression(alpha=DESIGN.alpha, p=2)
    for i in range(len(y_a)):
        model.update(np.array([y_a[i], 1.0, 0.0]))
        model.update(np.array([y_b[i], 1.0, 1.0]))
        if (i + 1) % every == 0:
            model.infer()
    return model


def ours_run(y_a: np.ndarray, y_b: np.ndarray, every: int) -> sequential.Result:
    result = None
    for n in range(every, len(y_a) + 1, every):
        result = sequential.evaluate(
            Arm.per_user(users=n, successes=int(y_a[:n].sum())),
            Arm.per_user(users=n, successes=int(y_b[:n].sum())),
            Design(direction=Direction.HIGHER, mde=0.05, min_users=every),
            previous=result,
        )
    assert result is not None
    return result


@pytest.mark.parametrize(("effect", "both_reject"), [(0.0, False), (0.12, True)])
def test_decisions_and_intervals_agree_with_savvi(effect: float, both_reject: bool) -> None:
    """On 10 datasets of 1,000 users per arm (one conversion trial each), read every 100
    users: the same decision (none under A/A, candidate better under a large effect), the
    same estimate (the regression coefficient is the difference of rates), and intervals
    of comparable width that both cover the true difference."""
    rng = np.random.default_rng(1600 + int(effect * 100))
    for _ in range(10):
        y_a = rng.binomial(1, 0.2, 1000).astype(float)
        y_b = rng.binomial(1, 0.2 + effect, 1000).astype(float)
        theirs = savvi_run(y_a, y_b, 100)
        ours = ours_run(y_a, y_b, 100)
        assert ours.difference == pytest.approx(theirs.beta[1], abs=1e-9)
        assert ours.interval is not None
        their_low, their_high = theirs.conf_int[1]
        assert (ours.p_value <= DESIGN.alpha) == both_reject == (theirs.p_value[1] <= 0.05)
        for low, high in (ours.interval, (their_low, their_high)):
            assert low <= effect <= high
        ratio = (ours.interval[1] - ours.interval[0]) / (their_high - their_low)
        print(
            f"interval width ours/savvi {ratio:.2f}, p {ours.p_value:.3g}/{theirs.p_value[1]:.3g}"
        )
        assert 0.5 < ratio < 2, ratio
        if both_reject:
            assert abs(math.log10(ours.p_value) - math.log10(theirs.p_value[1])) < 1


def test_summary_is_json_ready_with_every_figure_status_shows() -> None:
    r = sequential.evaluate(
        Arm.per_user(users=2000, successes=200), Arm.per_user(users=2000, successes=300), DESIGN
    )
    summary = json.loads(json.dumps(r.summary()))
    assert summary["outcome"] == "CandidateWins" and summary["unit"] == sequential.UNIT_USERS
    assert summary["stable"] == {"users": 2000, "successes": 200, "trials": 2000, "rate": 0.1}
    assert summary["candidate"]["rate"] == 0.15
    assert summary["difference"] == pytest.approx(0.05)
    assert r.interval is not None and summary["interval"] == list(r.interval)
    assert summary["pValue"] == r.p_value and summary["eValue"] == r.e_value
    assert summary["usersNeeded"] == r.users_needed and summary["message"] == r.message
    early = sequential.evaluate(
        Arm.per_user(users=0, successes=0), Arm.per_user(users=0, successes=0), DESIGN
    ).summary()
    assert early["interval"] is None and early["difference"] is None
    assert early["usersNeeded"] is None and early["stable"]["rate"] is None


def test_no_verdict_before_enough_successes_and_non_successes_in_each_arm() -> None:
    """Zero conversions against nine, 5,000 users each: the normal approximation would
    already decide (here: a difference of the MDE ruled out), on fewer than the 10 events
    per arm it needs."""
    none = Arm.per_user(users=5000, successes=0)
    nine = Arm.per_user(users=5000, successes=9)
    r = sequential.evaluate(none, nine, DESIGN)
    assert r.outcome == Outcome.UNDECIDED and "0 successes (or non-successes)" in r.message
    all_but = Arm.per_user(users=5000, successes=4995)
    assert "5 successes (or non-successes)" in sequential.evaluate(all_but, nine, DESIGN).message
    lenient = Design(direction=Direction.HIGHER, mde=0.02, min_successes=0)
    assert sequential.evaluate(none, nine, lenient).outcome != Outcome.UNDECIDED


def test_deadline_ends_an_experiment_whose_candidate_converts_nobody() -> None:
    """review14 R3: 0 of 20,000 against 10,000 of 20,000 never reaches min_successes in
    the candidate's arm; the deadline still ends it, keeping stable ("no significant
    difference by the deadline", issue 16), with the gate that held the test named."""
    design = Design(direction=Direction.HIGHER, mde=0.01)
    stable = Arm.per_user(users=20_000, successes=10_000)
    candidate = Arm.per_user(users=20_000, successes=0)
    assert sequential.evaluate(stable, candidate, design).outcome == Outcome.UNDECIDED
    result = sequential.evaluate(stable, candidate, design, deadline=True)
    assert result.outcome == Outcome.NO_DIFFERENCE, result.message
    assert "deadline" in result.message and "0 successes (or non-successes)" in result.message
    assert result.interval is None and result.p_value == 1.0  # no test was run
    capped = Design(direction=Direction.HIGHER, mde=0.01, max_users=20_000)
    assert sequential.evaluate(stable, candidate, capped).outcome == Outcome.NO_DIFFERENCE


def test_deadline_with_too_few_users_is_no_difference() -> None:
    """review14 R3: a candidate share that never grew past min_users, and two arms without
    any variation: Undecided before the deadline, NoDifference at it."""
    design = Design(direction=Direction.HIGHER, mde=0.01, min_users=100)
    stable = Arm.per_user(users=1_000, successes=100)
    candidate = Arm.per_user(users=50, successes=5)  # a tiny share that never grew
    assert sequential.evaluate(stable, candidate, design).outcome == Outcome.UNDECIDED
    result = sequential.evaluate(stable, candidate, design, deadline=True)
    assert result.outcome == Outcome.NO_DIFFERENCE, result.message
    assert "50 users in the smaller arm" in result.message
    flat = Arm.per_user(users=500, successes=0)
    lenient = Design(direction=Direction.HIGHER, mde=0.01, min_successes=0)
    assert sequential.evaluate(flat, flat, lenient).outcome == Outcome.UNDECIDED
    by_deadline = sequential.evaluate(flat, flat, lenient, deadline=True)
    assert by_deadline.outcome == Outcome.NO_DIFFERENCE and "no variation" in by_deadline.message


def test_users_needed_counts_both_arms_at_the_current_split() -> None:
    """Equal arms: twice ``users_for_power`` less the users so far. A 10% candidate share
    with the same per-user variance needs V = (v + 9 v) / n_s, so n_s is 5x the 50/50 one
    and the total 5 * 1.11 / 2 = 2.78x."""
    design = Design(direction=Direction.HIGHER, mde=0.02)
    even = sequential.evaluate(
        Arm.per_user(users=1000, successes=100), Arm.per_user(users=1000, successes=100), design
    )
    per_arm = sequential.users_for_power(2 * 0.1 * 0.9, design)
    assert even.users_needed == math.ceil(2 * per_arm) - 2000
    split = sequential.evaluate(
        Arm.per_user(users=1800, successes=180), Arm.per_user(users=200, successes=20), design
    )
    assert split.users_needed is not None
    assert split.users_needed + 2000 == pytest.approx((2 * per_arm) * 50 / 18, abs=2)


def test_the_running_state_from_status_continues_as_the_result_does() -> None:
    """What the strategy keeps in status (p-value, interval, through JSON) makes the next
    look decide exactly as the in-memory result would."""
    first = sequential.evaluate(
        Arm.per_user(users=1000, successes=100), Arm.per_user(users=1000, successes=128), DESIGN
    )
    kept = json.loads(json.dumps({"p": first.p_value, "interval": first.interval}))
    restored = sequential.Running(kept["p"], tuple(kept["interval"]))
    arms = Arm.per_user(users=1500, successes=150), Arm.per_user(users=1500, successes=160)
    from_result = sequential.evaluate(*arms, DESIGN, previous=first)
    from_status = sequential.evaluate(*arms, DESIGN, previous=restored)
    assert from_status == from_result
    assert from_result.running == sequential.Running(from_result.p_value, from_result.interval)
    assert from_result.p_value == first.p_value  # the running minimum held
