"""The A/B verdict proven by simulation (issue 16 §1): users with several correlated
requests each, the verdict read at every interval (peeking).

- 1,000 A/A runs: the share that ever declares a winner stays at or under alpha. The
  assertion's margin is a one-sided binomial bound: if the true false-positive rate were
  exactly alpha, the count would exceed ``binom.ppf(0.999, runs, alpha)`` with
  probability <= 0.1%; a method that is off (the same harness with a fixed-horizon test
  read at every look, or with requests treated as independent) fails it.
- A/B runs whose true difference is the MDE, stopped at ``users_for_power``: the share
  that finds the candidate better reaches the design's power (same style of bound).

Everything is vectorized over runs (numpy) with a fixed seed; the printed figures go to
docs/experiments.md. A bigger run: `make stats-sim`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import stats

from ferryman.analysis import sequential
from ferryman.analysis.sequential import Design, Direction

RUNS = int(os.environ.get("FERRYMAN_SIM_RUNS", "1000"))
LOOKS = 20
ALPHA = 0.05
BASE = 0.10  # mean per-request success probability
CONCENTRATION = 4.0  # Beta(a, b) with a + b = 4: intra-user correlation 1 / (a + b + 1) = 0.2
EXTRA_REQUESTS = 2.0  # requests per user: 1 + Poisson(2)


def users(rng: np.random.Generator, runs: int, n: int, mean: float) -> np.ndarray:
    """Per-user (x, y) = (requests, successes), shape (2, runs, n): each user has a
    propensity p ~ Beta(mean * c, (1 - mean) * c) shared by all their requests."""
    x = 1 + rng.poisson(EXTRA_REQUESTS, size=(runs, n))
    p = rng.beta(mean * CONCENTRATION, (1 - mean) * CONCENTRATION, size=(runs, n))
    y = rng.binomial(x, p)
    return np.stack([x, y]).astype(float)


def sums_per_look(xy: np.ndarray, looks: int) -> dict[str, np.ndarray]:
    """Cumulative per-user sums at each look, shape (runs, looks)."""
    x, y = xy
    runs, n = x.shape
    m = n // looks

    def cum(v: np.ndarray) -> np.ndarray:
        return v[:, : m * looks].reshape(runs, looks, m).sum(-1).cumsum(-1)

    return {
        "n": np.broadcast_to(np.arange(1, looks + 1) * m, (runs, looks)).astype(float),
        "sx": cum(x),
        "sy": cum(y),
        "sxx": cum(x * x),
        "syy": cum(y * y),
        "sxy": cum(x * y),
    }


def simulate(rng: np.random.Generator, runs: int, n: int, mean: float) -> dict[str, np.ndarray]:
    """``sums_per_look`` of ``runs`` runs of ``n`` users each, built 500 runs at a time so
    that memory stays bounded for the bigger runs of `make stats-sim`."""
    parts = [
        sums_per_look(users(rng, min(500, runs - start), n, mean), LOOKS)
        for start in range(0, runs, 500)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def rate_and_variance(s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    var = sequential.rate_variance(s["n"], s["sx"], s["sy"], s["sxx"], s["syy"], s["sxy"])
    return s["sy"] / s["sx"], var


def msprt_decisions(a, b, design: Design) -> tuple[np.ndarray, np.ndarray]:
    """(rejected at any look, sign of the difference at the first rejection) per run."""
    ra, va = rate_and_variance(a)
    rb, vb = rate_and_variance(b)
    diff, var = rb - ra, va + vb
    log_lr = sequential.log_mixture_ratio(diff, var, design.tau2)
    events = np.minimum.reduce([a["sy"], b["sy"], a["sx"] - a["sy"], b["sx"] - b["sy"]])
    ready = (np.minimum(a["n"], b["n"]) >= design.min_users) & (events >= design.min_successes)
    hit = (log_lr >= math.log(1 / design.alpha)) & ready
    first = np.argmax(hit, axis=1)
    sign = np.sign(diff[np.arange(len(diff)), first])
    return hit.any(axis=1), sign


def binomial_ci(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return ci.low, ci.high


def report(label: str, k: int, n: int) -> None:
    low, high = binomial_ci(k, n)
    load = os.getloadavg()[0]
    print(f"\n{label}: {k}/{n} = {k / n:.4f} (95% CI {low:.4f}-{high:.4f}); load {load:.2f}")


DESIGN = Design(direction=Direction.HIGHER, mde=0.02, alpha=ALPHA, min_users=100)


@pytest.fixture(scope="module")
def aa() -> tuple[dict, dict]:
    rng = np.random.default_rng(16)
    n = LOOKS * 150
    return simulate(rng, RUNS, n, BASE), simulate(rng, RUNS, n, BASE)


def test_aa_false_positive_rate_stays_under_alpha_when_peeking_every_look(aa) -> None:
    a, b = aa
    rejected, _ = msprt_decisions(a, b, DESIGN)
    k = int(rejected.sum())
    report(f"A/A mSPRT, delta method, {LOOKS} looks, alpha {ALPHA}", k, RUNS)
    assert k <= stats.binom.ppf(0.999, RUNS, ALPHA)


@pytest.mark.parametrize("base", [0.005, 0.02])
def test_aa_with_rare_successes_and_a_small_candidate_share_stays_under_alpha(base) -> None:
    """10% of users on the candidate (30 per look), conversions of 0.5% or 2% per request:
    an arm with no successes yet has a zero variance estimate, which is why no verdict
    comes before ``min_successes`` successes and non-successes per arm."""
    rng = np.random.default_rng(int(base * 1000))
    runs = RUNS // 2
    a = simulate(rng, runs, LOOKS * 270, base)
    b = simulate(rng, runs, LOOKS * 30, base)
    design = Design(direction=Direction.HIGHER, mde=0.2 * base, alpha=ALPHA)
    with np.errstate(divide="ignore", invalid="ignore"):
        rejected, _ = msprt_decisions(a, b, design)
    k = int(rejected.sum())
    report(f"A/A base rate {base}, candidate share 10%", k, runs)
    assert k <= stats.binom.ppf(0.999, runs, ALPHA)


def test_the_same_harness_catches_a_fixed_horizon_test_read_at_every_look(aa) -> None:
    """The bound has teeth: a z-test at 1.96 read at every look (the mistake the
    sequential test exists to avoid) fails the very assertion above."""
    a, b = aa
    ra, va = rate_and_variance(a)
    rb, vb = rate_and_variance(b)
    z = (rb - ra) / np.sqrt(va + vb)
    k = int((np.abs(z) > stats.norm.ppf(1 - ALPHA / 2)).any(axis=1).sum())
    report(f"A/A fixed-horizon z-test read at each of {LOOKS} looks", k, RUNS)
    assert k > stats.binom.ppf(0.999, RUNS, ALPHA)


def test_treating_requests_as_independent_understates_the_variance(aa) -> None:
    """Requests of one user are correlated: a binomial variance over requests is smaller
    than the delta-method one, so the per-look test is too eager (printed: its A/A rate
    under peeking, and the variance ratio, the design effect)."""
    a, b = aa
    ra, va = rate_and_variance(a)
    rb, vb = rate_and_variance(b)
    naive = ra * (1 - ra) / a["sx"] + rb * (1 - rb) / b["sx"]
    ratio = float(np.median((va + vb) / naive))
    log_lr = sequential.log_mixture_ratio(rb - ra, naive, DESIGN.tau2)
    k = int((log_lr >= math.log(1 / ALPHA)).any(axis=1).sum())
    report("A/A mSPRT with requests counted as independent", k, RUNS)
    print(f"median design effect (delta-method / binomial variance): {ratio:.2f}")
    assert ratio > 1.3


def test_ab_with_a_true_effect_of_the_mde_reaches_a_verdict_with_the_designed_power() -> None:
    rng = np.random.default_rng(61)
    pilot_a, pilot_b = users(rng, 1, 200_000, BASE), users(rng, 1, 200_000, BASE + DESIGN.mde)
    per_user = sum(
        float(rate_and_variance(sums_per_look(p, 1))[1][0, 0]) * 200_000 for p in (pilot_a, pilot_b)
    )
    n_needed = sequential.users_for_power(per_user, DESIGN)
    fixed = sequential.users_fixed_horizon(per_user, DESIGN)
    runs = RUNS * 3 // 5
    n = math.ceil(n_needed / LOOKS) * LOOKS
    a = simulate(rng, runs, n, BASE)
    b = simulate(rng, runs, n, BASE + DESIGN.mde)
    rejected, sign = msprt_decisions(a, b, DESIGN)
    wins = int((rejected & (sign > 0)).sum())
    wrong = int((rejected & (sign < 0)).sum())
    print(
        f"\nusers per arm for power {DESIGN.power}: {n_needed:.0f} sequential, "
        f"{fixed:.0f} fixed-horizon read once (ratio {n_needed / fixed:.2f})"
    )
    report(f"A/B true difference = MDE {DESIGN.mde}, candidate wins by {n} users", wins, runs)
    assert wrong == 0
    assert wins >= stats.binom.ppf(0.001, runs, DESIGN.power)


def test_the_scalar_verdict_agrees_with_the_vectorized_core(aa) -> None:
    """``sequential.evaluate`` (what the strategy calls, one look at a time) decides as
    the vectorized simulation does, on the first 200 A/A runs and on A/B runs."""
    rng = np.random.default_rng(7)
    ab_a = sums_per_look(users(rng, 100, LOOKS * 150, BASE), LOOKS)
    ab_b = sums_per_look(users(rng, 100, LOOKS * 150, BASE + 0.03), LOOKS)
    for a, b, runs in ((*aa, 200), (ab_a, ab_b, 100)):
        rejected, _ = msprt_decisions(a, b, DESIGN)
        for run in range(runs):
            previous = None
            decided = False
            for look in range(LOOKS):
                arms = [
                    sequential.Arm.clustered(
                        users=int(s["n"][run, look]),
                        trials=s["sx"][run, look],
                        successes=s["sy"][run, look],
                        trials_sq=s["sxx"][run, look],
                        successes_sq=s["syy"][run, look],
                        cross=s["sxy"][run, look],
                    )
                    for s in (a, b)
                ]
                previous = sequential.evaluate(arms[0], arms[1], DESIGN, previous=previous)
                if previous.outcome in (
                    sequential.Outcome.CANDIDATE_WINS,
                    sequential.Outcome.STABLE_WINS,
                ):
                    decided = True
                    break
            assert decided == bool(rejected[run]), (run, previous)
