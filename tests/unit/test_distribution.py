"""PSI and Jensen-Shannon distance of two Prometheus histograms, on cases computed by
hand (the arithmetic is in each test), plus the refusals that make a measurement
Inconclusive."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ferryman.analysis import distribution
from ferryman.analysis.distribution import Histogram, Incomparable


def hist(*cumulative: float, bounds: tuple[str, ...] = ("0.25", "0.5", "0.75", "+Inf")):
    return Histogram.from_buckets(dict(zip(bounds, cumulative, strict=True)))


def test_identical_histograms_have_zero_psi_and_distance() -> None:
    h = hist(10, 30, 60, 100)
    r = distribution.compare(h, h, min_count=100)
    assert r.psi == 0 and r.js_distance == 0
    assert r.buckets == 4 and r.candidate_count == r.stable_count == 100
    assert r.psi_noise == pytest.approx(3 * (1 / 100 + 1 / 100))


def test_psi_by_hand_with_smoothing() -> None:
    """Counts 50/50 against 25/75 in two buckets, 100 samples each, pseudo-count 0.5:
    c = (50.5/101, 50.5/101) = (0.5, 0.5), s = (25.5/101, 75.5/101);
    PSI = (0.5 - 25.5/101) ln(0.5 * 101/25.5) + (0.5 - 75.5/101) ln(0.5 * 101/75.5)."""
    c, s = hist(50, 100, bounds=("1", "+Inf")), hist(25, 100, bounds=("1", "+Inf"))
    s1, s2 = 25.5 / 101, 75.5 / 101
    expected = (0.5 - s1) * math.log(0.5 / s1) + (0.5 - s2) * math.log(0.5 / s2)
    assert distribution.compare(c, s, min_count=1).psi == pytest.approx(expected, rel=1e-12)


def test_js_distance_by_hand_base_two() -> None:
    """P = (1/2, 1/2), Q = (1/4, 3/4), M = (3/8, 5/8);
    JSD = 1/2 KL(P||M) + 1/2 KL(Q||M) in bits; the distance is its square root."""
    p, q, m = (0.5, 0.5), (0.25, 0.75), (0.375, 0.625)

    def kl(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, b, strict=True))

    expected = math.sqrt(0.5 * kl(p, m) + 0.5 * kl(q, m))
    c, s = hist(50, 100, bounds=("1", "+Inf")), hist(25, 100, bounds=("1", "+Inf"))
    assert distribution.compare(c, s, min_count=1).js_distance == pytest.approx(expected)


def test_disjoint_histograms_are_at_distance_one_and_psi_stays_finite() -> None:
    """All candidate predictions in the first bucket, all stable ones in the last: JS
    distance (base 2) is exactly 1; unsmoothed PSI would be infinite; smoothed, with
    hi = 1000.5/1001 and lo = 0.5/1001, c = (hi, lo) and s = (lo, hi), so
    PSI = (hi - lo) ln(hi/lo) + (lo - hi) ln(lo/hi) = 2 (hi - lo) ln(hi/lo)."""
    c = hist(1000, 1000, bounds=("0", "+Inf"))
    s = hist(0, 1000, bounds=("0", "+Inf"))
    r = distribution.compare(c, s, min_count=1)
    assert r.js_distance == pytest.approx(1.0)
    hi, lo = 1000.5 / 1001, 0.5 / 1001
    assert r.psi == pytest.approx(2 * (hi - lo) * math.log(hi / lo))
    assert math.isfinite(r.psi)


def test_cumulative_counts_are_differenced_and_out_of_order_labels_sorted() -> None:
    h = Histogram.from_buckets({"+Inf": 10.0, "1": 4.0, "0.5": 1.0, "2": 3.5})
    assert h.bounds == (0.5, 1.0, 2.0, math.inf)
    # 1, 3, then a dip (extrapolation noise) counted as 0, then 6.5.
    assert h.counts().tolist() == [1.0, 3.0, 0.0, 6.5]


def test_psi_noise_floor_matches_the_chi_square_approximation() -> None:
    """Two samples of 2,000 from one 10-bucket distribution: mean PSI over 400 pairs is
    close to the reported noise floor (B - 1)(1/N + 1/N) = 0.009."""
    rng = np.random.default_rng(5)
    p = np.linspace(1, 2, 10)
    p /= p.sum()
    values = [
        distribution.psi(rng.multinomial(2000, p).astype(float), rng.multinomial(2000, p))
        for _ in range(400)
    ]
    assert float(np.mean(values)) == pytest.approx(9 * 2 / 2000, rel=0.15)


@pytest.mark.parametrize(
    ("candidate", "stable", "why"),
    [
        (hist(5, 10, 20, 99), hist(5, 10, 20, 500), "99 candidate samples, 100 needed"),
        (hist(5, 10, 20, 500), hist(5, 10, 20, 30), "30 stable samples, 100 needed"),
        (
            hist(5, 10, 20, 500),
            hist(5, 10, 500, bounds=("0.1", "0.5", "+Inf")),
            "bucket bounds differ",
        ),
    ],
)
def test_too_few_samples_or_different_buckets_are_incomparable(candidate, stable, why) -> None:
    with pytest.raises(Incomparable, match=why):
        distribution.compare(candidate, stable, min_count=100)


@pytest.mark.parametrize(
    ("buckets", "why"),
    [
        ({"0.5": 3.0}, r"no le=\+Inf bucket"),
        ({}, r"no le=\+Inf bucket"),
        ({"abc": 1.0, "+Inf": 2.0}, "not a number"),
        ({"1": math.nan, "+Inf": 2.0}, "has count nan"),
    ],
)
def test_unreadable_histograms_are_incomparable(buckets, why) -> None:
    with pytest.raises(Incomparable, match=why):
        Histogram.from_buckets(buckets)


def test_empty_window_is_incomparable_even_without_a_minimum() -> None:
    with pytest.raises(Incomparable, match="no samples"):
        distribution.compare(hist(0, 0, 0, 0), hist(0, 0, 0, 0), min_count=0)
