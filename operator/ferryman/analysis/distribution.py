"""Do the candidate and the stable predict alike? Two Prometheus histograms compared.

Why this module exists: error rate and latency say a model works, not that it predicts
like the one it replaces. Model servers commonly export a histogram of their predictions
(``model_prediction_bucket{version=..., le=...}``); in a shadow both versions see the same
inputs, so a shift between the two histograms is the model's doing. This module turns two
such histograms into two numbers (pure, no I/O); ``analysis.evaluate`` judges them.

Input: cumulative bucket counts over one window, ``{le: count}`` with ``le`` Prometheus's
upper bounds as text (``"0.5"``, ``"+Inf"``), as ``sum by (le) (increase(
model_prediction_bucket{version="..."}[w]))`` returns them. The query must give counts
(``increase``), not per-second rates (``rate``): the sample minimum and the smoothing are
in counts. Per-bucket counts are the differences of the cumulative ones; a negative
difference (a counter reset or extrapolation noise inside ``increase``) counts as 0.

- Population Stability Index (the symmetrised Kullback-Leibler, or Jeffreys, divergence
  over the buckets; B. Yurdakul, "Statistical Properties of Population Stability Index",
  Western Michigan University dissertation, 2018; N. Siddiqi, "Credit Risk
  Scorecards", Wiley 2006, ch. 8): ``PSI = sum_i (c_i - s_i) * ln(c_i / s_i)`` over the
  candidate's (c) and the stable's (s) bucket probabilities. An empty bucket on one side
  makes it infinite, so both histograms are smoothed first by additive smoothing with a
  pseudo-count of 0.5 per bucket, the Krichevsky-Trofimov estimator (the posterior mean
  under a Jeffreys Dirichlet(1/2) prior; R. Krichevsky, V. Trofimov, "The performance of
  universal encoding", IEEE Trans. Inf. Theory 27(2), 1981; additive smoothing in
  general: C. D. Manning, P. Raghavan, H. Schuetze, "Introduction to Information
  Retrieval", CUP 2008, ch. 13, add-one):
  ``p_i = (n_i + 0.5) / (N + 0.5 B)``. Under no shift, PSI is about
  ``(B - 1) (1 / N_c + 1 / N_s)`` (Yurdakul 2018: PSI * N_c N_s / (N_c + N_s) is
  approximately chi-square with B - 1 degrees of freedom), reported as the noise floor.
- Jensen-Shannon distance (the square root of the JS divergence), by
  ``scipy.spatial.distance.jensenshannon`` with ``base=2``, so it lies in [0, 1] (0: the
  same distribution; 1: disjoint supports). It is finite with empty buckets, so it is
  computed on the unsmoothed probabilities (J. Lin, "Divergence measures based on the
  Shannon entropy", IEEE Trans. Inf. Theory 37(1), 1991; D. M. Endres, J. E. Schindelin,
  "A new metric for probability distributions", IEEE Trans. Inf. Theory 49(7), 2003).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.spatial import distance

#: Added to every bucket's count before PSI (Jeffreys / Krichevsky-Trofimov).
PSEUDO_COUNT = 0.5


class Incomparable(ValueError):
    """The two histograms cannot be compared (yet): the message says why. Evaluation
    turns it into an Inconclusive measurement, never a failure."""


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts: ``bounds`` the ascending upper bounds (the last +Inf),
    ``cumulative`` the count at or under each."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def from_buckets(cls, buckets: Mapping[str, float]) -> Histogram:
        """From Prometheus's ``{le: count}``. Raises ``Incomparable`` on an unreadable
        ``le``, a missing ``+Inf`` bucket, or a non-finite or negative count."""
        pairs: list[tuple[float, float]] = []
        for le, count in buckets.items():
            try:
                bound = float(le)
            except ValueError:
                raise Incomparable(f"bucket le={le!r} is not a number") from None
            if not math.isfinite(count) or count < 0:
                raise Incomparable(f"bucket le={le} has count {count}")
            pairs.append((bound, count))
        pairs.sort()
        if not pairs or pairs[-1][0] != math.inf:
            raise Incomparable("no le=+Inf bucket: not a Prometheus histogram")
        return cls(tuple(b for b, _ in pairs), tuple(c for _, c in pairs))

    @property
    def total(self) -> float:
        return self.cumulative[-1]

    def counts(self) -> np.ndarray:
        """Per-bucket counts (negative differences counted as 0)."""
        return np.maximum(np.diff(np.asarray(self.cumulative, dtype=float), prepend=0.0), 0.0)


@dataclass(frozen=True)
class Comparison:
    """``psi`` (>= 0) and ``js_distance`` (in [0, 1]) of the candidate against the stable,
    the sample counts, the number of buckets and PSI's expected value under no shift."""

    psi: float
    js_distance: float
    candidate_count: float
    stable_count: float
    buckets: int
    psi_noise: float

    def describe(self) -> str:
        return (
            f"PSI {self.psi:.4g} (noise ~{self.psi_noise:.2g}), JS distance "
            f"{self.js_distance:.4g}, {self.candidate_count:.6g}/{self.stable_count:.6g} "
            f"samples in {self.buckets} buckets"
        )


def psi(candidate: np.ndarray, stable: np.ndarray, pseudo: float = PSEUDO_COUNT) -> float:
    """PSI of two per-bucket count vectors of equal length, smoothed (module docstring)."""
    c = (candidate + pseudo) / (candidate.sum() + pseudo * len(candidate))
    s = (stable + pseudo) / (stable.sum() + pseudo * len(stable))
    return float(np.sum((c - s) * np.log(c / s)))


def js_distance(candidate: np.ndarray, stable: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2, in [0, 1]; inputs are normalised by scipy."""
    return float(distance.jensenshannon(candidate, stable, base=2))


def compare(candidate: Histogram, stable: Histogram, *, min_count: float) -> Comparison:
    """PSI and JS distance of ``candidate`` against ``stable``. Raises ``Incomparable``
    when the bucket bounds differ or either histogram has fewer than ``min_count``
    samples (its ``+Inf`` bucket)."""
    if candidate.bounds != stable.bounds:
        raise Incomparable(
            f"bucket bounds differ: candidate {_bounds(candidate)}, stable {_bounds(stable)}"
        )
    for name, h in (("candidate", candidate), ("stable", stable)):
        if h.total < min_count:
            raise Incomparable(f"{h.total:.6g} {name} samples, {min_count:.6g} needed")
    c, s = candidate.counts(), stable.counts()
    if c.sum() <= 0 or s.sum() <= 0:
        raise Incomparable("no samples in any bucket")
    b = len(c)
    return Comparison(
        psi=psi(c, s),
        js_distance=js_distance(c, s),
        candidate_count=candidate.total,
        stable_count=stable.total,
        buckets=b,
        psi_noise=(b - 1) * (1 / candidate.total + 1 / stable.total),
    )


def _bounds(h: Histogram) -> str:
    shown = ",".join(f"{b:g}" for b in h.bounds[:8])
    return f"[{shown}{',...' if len(h.bounds) > 8 else ''}]"
