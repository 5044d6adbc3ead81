"""The A/B verdict: a sequential test that stays valid when it is looked at every interval.

Why this module exists: an A/B test is read while it runs (every analysis interval), and a
fixed-horizon z-test read twenty times rejects a true null far more often than its alpha
(about 20% instead of 5%; `tests/unit/test_sequential_simulation.py` shows it). This module
gives a verdict whose error rate holds however often, and whenever, it is read. It is pure
(numbers in, a verdict out); the abTest strategy feeds it the counters it reads from
Prometheus.

Method: the mixture sequential probability ratio test (mSPRT) with a normal mixture over
the difference of the two rates, in its normal-approximation form, and its always-valid
p-value and confidence sequence:

- R. Johari, P. Koomen, L. Pekelis, D. Walsh, "Always Valid Inference: Continuous
  Monitoring of A/B Tests", Operations Research 70(3), 2022 (arXiv:1512.04922), the
  mSPRT and its normal approximation for two samples: with the estimated difference ``d``
  (candidate rate minus stable rate), its variance ``V`` and a mixing distribution
  N(0, tau^2) over the true difference, the
  mixture likelihood ratio against "no difference" is
  ``Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))``; the always-valid
  p-value is the running minimum of ``min(1, 1 / Lambda)``; rejecting when it falls to
  ``alpha`` keeps the type-I error at or under ``alpha`` at any stopping time (Ville's
  inequality). Johari et al. fit the mixing scale to the effects seen in past
  experiments; without such a history the MDE, the effect the experiment is designed to
  find, is that scale here: ``tau = mde`` unless set.
- S. R. Howard, A. Ramdas, J. McAuliffe, J. Sekhon, "Time-uniform, nonparametric,
  nonasymptotic confidence sequences", Annals of Statistics 49(2), 2021 (the two-sided
  normal-mixture boundary): the set of differences ``theta`` for which the same ratio stays
  under ``1 / alpha`` is the confidence sequence
  ``|d - theta| <= sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))``,
  intersected over the looks so far; it excludes 0 exactly when the p-value is <= alpha.

A group-sequential design with alpha spending (O'Brien-Fleming via Lan-DeMets) was the
alternative; it needs the number and timing of looks fixed in advance (or an information
fraction the strategy would have to estimate), while a rollout's looks happen on a timer
whose count depends on traffic. The mixture test needs no such plan, which is why it is
used here.

Unit of randomization: the user. Each arm is given as per-user sufficient statistics
(``Arm``): ``users`` (n), and the sums over users of trials x_i, successes y_i, x_i^2,
y_i^2 and x_i*y_i. The rate is ``sum(y) / sum(x)``. When each user counts once (x_i = 1,
y_i in {0, 1}: e.g. "converted after first exposure") the variance below is exactly the
binomial ``p (1 - p) / n``. When the counted unit is the request and users send several,
correlated, requests, the rate is a ratio of two per-user means, and its variance is the
delta-method one (A. Deng, U. Knoblich, J. Lu, "Applying the Delta Method in Metric
Analytics: A Practical Guide with Novel Ideas", KDD 2018):
``Var(R) ~= (s_y^2 - 2 R s_xy + R^2 s_x^2) / (n * xbar^2)``, with plug-in (1/n) moments.
Treating requests as independent instead underestimates the variance and breaks the
error guarantee (the simulation shows that too).

The normal approximation and the plug-in variance make the guarantee asymptotic (as in
Johari et al.); ``Design.min_users`` holds any verdict until both arms have that many users,
and ``Design.min_successes`` until each arm has that many successes and as many
non-successes (the usual n p >= 10 and n (1 - p) >= 10 condition for the normal
approximation to a proportion; without it, rare conversions in a small arm give a zero
variance estimate and the false-positive rate under peeking exceeds 10%, which
``tests/unit/test_sequential_simulation.py`` shows).

At the deadline (``deadline=True``, or ``Design.max_users`` reached in the smaller arm) a
look still held by one of those gates (too few users, successes or non-successes in an
arm, or no variation at all) ends with ``NoDifference``, its message naming the gate:
issue 16's outcomes are "candidate wins", "stable wins" or "no significant difference by
the deadline" (report, keep stable), and staying ``NoSignificantDifferenceYet`` past the
deadline would run the experiment forever (e.g. a candidate that converts nobody: 0
successes never reach ``min_successes``). A winner is not declared from such counts: the
gate says the normal approximation behind the mSPRT's error guarantee does not hold yet,
so a "wins" would carry no stated error rate; an exact test for small counts (e.g. a
beta-binomial mixture confidence sequence per arm) would spend its own alpha on top of the
mSPRT's. "No significant difference was found by the deadline" is true as stated, keeps
stable (so such a candidate is never promoted), and rejects nothing, so the type-I error
bound (and the A/A simulation) is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import optimize, special

#: What the verdict counts, shown in status.
UNIT_USERS = "users (one trial per user)"
UNIT_REQUESTS = "requests clustered within users (delta method)"


class Direction(StrEnum):
    HIGHER = "HigherIsBetter"
    LOWER = "LowerIsBetter"


class Outcome(StrEnum):
    CANDIDATE_WINS = "CandidateWins"
    STABLE_WINS = "StableWins"
    #: No significant difference yet: keep collecting.
    UNDECIDED = "NoSignificantDifferenceYet"
    #: No difference of at least the MDE (ruled out by the confidence sequence), or none
    #: found by the deadline.
    NO_DIFFERENCE = "NoDifference"


@dataclass(frozen=True)
class Arm:
    """One variant's per-user sufficient statistics.

    ``users`` is the number of users (the randomization unit, n >= 0); ``trials``,
    ``successes``, ``trials_sq``, ``successes_sq`` and ``cross`` are the sums over users of
    x_i, y_i, x_i^2, y_i^2 and x_i*y_i (all >= 0). Build with ``per_user`` or ``clustered``.
    """

    users: int
    trials: float
    successes: float
    trials_sq: float
    successes_sq: float
    cross: float

    @classmethod
    def per_user(cls, *, users: int, successes: int) -> Arm:
        """One trial per user, success 0 or 1 (e.g. converted). Raises ValueError unless
        0 <= successes <= users."""
        if users < 0 or not 0 <= successes <= users:
            raise ValueError(f"need 0 <= successes ({successes}) <= users ({users})")
        return cls(users, users, successes, users, successes, successes)

    @classmethod
    def clustered(
        cls,
        *,
        users: int,
        trials: float,
        successes: float,
        trials_sq: float,
        successes_sq: float,
        cross: float,
    ) -> Arm:
        """Several trials (requests) per user. Raises ValueError on negative sums or on
        sums that no set of per-user counts can have (e.g. sum x^2 < (sum x)^2 / n)."""
        arm = cls(users, trials, successes, trials_sq, successes_sq, cross)
        if min(users, trials, successes, trials_sq, successes_sq, cross) < 0:
            raise ValueError(f"negative count in {arm}")
        if users and (trials_sq * users < trials**2 * (1 - 1e-9)):
            raise ValueError(f"sum of squares below (sum)^2/n in {arm}")
        return arm

    @property
    def unit(self) -> str:
        one_each = self.trials == self.users and self.trials_sq == self.users
        return UNIT_USERS if one_each else UNIT_REQUESTS

    @property
    def rate(self) -> float | None:
        return self.successes / self.trials if self.trials > 0 else None

    @property
    def variance(self) -> float:
        """Delta-method variance of ``rate`` (rate units squared); NaN without data."""
        return float(
            rate_variance(
                self.users,
                self.trials,
                self.successes,
                self.trials_sq,
                self.successes_sq,
                self.cross,
            )
        )


def rate_variance(n: Any, sx: Any, sy: Any, sxx: Any, syy: Any, sxy: Any) -> Any:
    """Delta-method variance of ``sum(y) / sum(x)`` from per-user sums (Deng, Knoblich and
    Lu 2018), elementwise over numpy arrays or scalars; NaN where n or sum(x) is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n, sx, sy = (np.asarray(v, dtype=float) for v in (n, sx, sy))
        mx, my = sx / n, sy / n
        r = sy / sx
        vx = sxx / n - mx**2
        vy = syy / n - my**2
        cxy = sxy / n - mx * my
        linear = np.maximum(vy - 2 * r * cxy + r**2 * vx, 0.0)
        return linear / (n * mx**2)


def log_mixture_ratio(diff: Any, var: Any, tau2: float) -> Any:
    """log Lambda, the normal-mixture likelihood ratio of Johari et al. (2022) for an
    estimated difference ``diff`` with variance ``var`` and mixing variance ``tau2``
    (elementwise)."""
    return 0.5 * np.log(var / (var + tau2)) + tau2 * diff**2 / (2 * var * (var + tau2))


def radius(var: Any, tau2: float, alpha: float) -> Any:
    """Half-width of the confidence sequence at this look (Howard et al. 2021, normal mixture)."""
    return np.sqrt(var * (var + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log1p(tau2 / var)))


@dataclass(frozen=True)
class Design:
    """What the experiment is for.

    ``mde``: minimum detectable effect, an absolute difference of rates (e.g. 0.01 = one
    percentage point for a conversion rate), > 0. ``alpha``: significance level in (0, 1).
    ``power``: wanted probability in (0, 1) of a verdict by ``users_needed`` when the true
    difference is ``mde``. ``min_users``: users per arm before any verdict;
    ``min_successes``: successes, and non-successes (trials - successes), per arm before
    any verdict. ``tau``: the mixing scale (default ``mde``). ``max_users``: users per arm
    after which no verdict means no difference (the deadline in users; the strategy may
    also end on time).
    """

    direction: Direction
    mde: float
    alpha: float = 0.05
    power: float = 0.8
    min_users: int = 100
    min_successes: int = 10
    tau: float | None = None
    max_users: int | None = None

    def __post_init__(self) -> None:
        if not self.mde > 0:
            raise ValueError(f"mde must be > 0, got {self.mde}")
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            raise ValueError(f"alpha and power must be in (0, 1): {self.alpha}, {self.power}")
        if self.tau is not None and not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    @property
    def tau2(self) -> float:
        return (self.tau if self.tau is not None else self.mde) ** 2


@dataclass(frozen=True)
class Running:
    """What carries over from one look to the next: the always-valid p-value so far and
    the intersection of the intervals so far (None before the first). The strategy keeps
    it in status between looks (``Result.running``), so a restarted operator goes on with
    the same running minimum."""

    p_value: float = 1.0
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class Result:
    """One look's verdict. ``difference`` is candidate rate minus stable rate;
    ``interval`` its always-valid confidence interval at level 1 - alpha (None before
    ``min_users``); ``p_value`` the always-valid p-value (running minimum); ``e_value`` this
    look's mixture likelihood ratio; ``users_needed`` more users, both arms together at
    the current split, until the test has ``power`` for a true difference of ``mde`` (None
    when it cannot be estimated yet)."""

    outcome: Outcome
    stable: Arm
    candidate: Arm
    unit: str
    difference: float | None
    interval: tuple[float, float] | None
    p_value: float
    e_value: float
    users_needed: int | None
    message: str

    @property
    def running(self) -> Running:
        return Running(self.p_value, self.interval)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures for status and ``kubectl ferryman status`` (camelCase keys):
        outcome, unit, per variant (``stable``, ``candidate``) users, successes, trials and
        rate, then difference, interval ``[low, high]``, pValue, eValue, usersNeeded and
        message; a figure that does not exist yet is None."""

        def arm(a: Arm) -> dict[str, Any]:
            return {
                "users": a.users,
                "successes": a.successes,
                "trials": a.trials,
                "rate": a.rate,
            }

        return {
            "outcome": self.outcome.value,
            "unit": self.unit,
            "stable": arm(self.stable),
            "candidate": arm(self.candidate),
            "difference": self.difference,
            "interval": list(self.interval) if self.interval is not None else None,
            "pValue": self.p_value,
            "eValue": self.e_value,
            "usersNeeded": self.users_needed,
            "message": self.message,
        }


def users_for_power(per_user_variance: float, design: Design) -> float:
    """Users per arm at which the mSPRT reaches ``design.power`` for a true difference of
    ``design.mde``, given the summed per-user variance of the two arms (so that
    V = per_user_variance / n). Lower bound argument: the test rejects by n at least when
    the z-statistic at n alone exceeds the boundary, whose probability is
    Phi(mde / sqrt(V) - b(V)); solved for V with Brent's method (scipy.optimize.brentq).
    Raises ValueError unless per_user_variance > 0."""
    if not per_user_variance > 0:
        raise ValueError("per-user variance must be > 0")
    z_power = float(special.ndtri(design.power))

    def gap(log_v: float) -> float:
        v = math.exp(log_v)
        bound = float(radius(v, design.tau2, design.alpha)) / math.sqrt(v)
        return design.mde / math.sqrt(v) - bound - z_power

    # gap decreases in V; bracket V between tiny and mde^2 (where gap < 0 always).
    lo, hi = math.log(design.mde**2) - 60, math.log(design.mde**2)
    log_v = optimize.brentq(gap, lo, hi, xtol=1e-10)
    return per_user_variance / math.exp(log_v)


def users_fixed_horizon(per_user_variance: float, design: Design) -> float:
    """Users per arm of a two-sided fixed-horizon z-test read once (the price of peeking,
    for comparison): ((z_{1-alpha/2} + z_power)^2 * per_user_variance / mde^2)."""
    z = float(special.ndtri(1 - design.alpha / 2) + special.ndtri(design.power))
    return z * z * per_user_variance / design.mde**2


def evaluate(
    stable: Arm,
    candidate: Arm,
    design: Design,
    *,
    previous: Running | Result | None = None,
    deadline: bool = False,
) -> Result:
    """The verdict at this look. ``previous`` is the last look's result or its
    ``running`` state (for the running minimum p-value and the running intersection of
    intervals; None at the first look);
    ``deadline`` says the experiment's time is up: then (as once ``max_users`` is reached)
    the outcome is never ``Undecided`` (see the module docstring). Arms must be cumulative
    since the start of the experiment."""
    unit = UNIT_USERS if stable.unit == candidate.unit == UNIT_USERS else UNIT_REQUESTS
    rs, rc = stable.rate, candidate.rate
    difference = rc - rs if rs is not None and rc is not None else None
    var = stable.variance + candidate.variance
    n_min = min(stable.users, candidate.users)
    needed = _still_needed(stable, candidate, design)
    ended = deadline or (design.max_users is not None and n_min >= design.max_users)

    def result(outcome: Outcome, message: str, **kw: Any) -> Result:
        base: dict[str, Any] = {"interval": None, "p_value": 1.0, "e_value": 1.0}
        base.update(kw)
        return Result(
            outcome, stable, candidate, unit, difference, users_needed=needed,
            message=message, **base,
        )  # fmt: skip

    def held(why: str) -> Result:
        """A gate holds the test: undecided, or no difference once the deadline is here."""
        if ended:
            return result(
                Outcome.NO_DIFFERENCE,
                f"no significant difference by the deadline (too little data for the test: {why})",
            )
        return result(Outcome.UNDECIDED, why)

    if difference is None or n_min < design.min_users:
        return held(f"{n_min} users in the smaller arm, {design.min_users} needed")
    events = min(
        stable.successes,
        candidate.successes,
        stable.trials - stable.successes,
        candidate.trials - candidate.successes,
    )
    if events < design.min_successes:
        return held(
            f"{events:g} successes (or non-successes) in an arm, {design.min_successes} needed"
        )
    if not var > 0 or not math.isfinite(var):
        # Every user identical in both arms (e.g. no successes yet): no evidence either way.
        return held("no variation yet (every user the same)")
    e_value = math.exp(min(float(log_mixture_ratio(difference, var, design.tau2)), 700.0))
    p_value = min(1.0, 1.0 / e_value)
    half = float(radius(var, design.tau2, design.alpha))
    low, high = difference - half, difference + half
    if previous is not None:
        p_value = min(p_value, previous.p_value)
        if previous.interval is not None:
            plow, phigh = previous.interval
            if max(low, plow) <= min(high, phigh):
                low, high = max(low, plow), min(high, phigh)
    if p_value <= design.alpha and (low > 0 or high < 0):
        higher = low > 0
        wins = (design.direction == Direction.HIGHER) == higher
        outcome = Outcome.CANDIDATE_WINS if wins else Outcome.STABLE_WINS
        side = "higher" if higher else "lower"
        message = f"candidate rate {side} than stable (p {p_value:.3g} <= alpha {design.alpha})"
    elif -design.mde < low and high < design.mde:
        outcome = Outcome.NO_DIFFERENCE
        message = f"a difference of {design.mde:g} or more is ruled out"
    elif ended:
        outcome = Outcome.NO_DIFFERENCE
        message = "no significant difference by the deadline"
    else:
        outcome = Outcome.UNDECIDED
        message = "no significant difference yet"
    return result(outcome, message, interval=(low, high), p_value=p_value, e_value=e_value)


def _still_needed(stable: Arm, candidate: Arm, design: Design) -> int | None:
    """More users in total at the current split k = n_c / n_s: with per-user variances
    v_s, v_c, V = (v_s + v_c / k) / n_s, so ``users_for_power`` gives n_s and the total is
    n_s (1 + k)."""
    ns, nc = stable.users, candidate.users
    if min(ns, nc) < 2:
        return None
    k = nc / ns
    per_user = stable.variance * ns + candidate.variance * nc / k
    if not per_user > 0 or not math.isfinite(per_user):
        return None
    total = users_for_power(per_user, design) * (1 + k)
    return max(0, math.ceil(total) - (ns + nc))
