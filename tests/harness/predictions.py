"""Prediction histograms per version for the simulated data plane (issue 16 §2).

A small companion of ``harness.dataplane`` (kept apart from it: that file belongs to the
routing work): it registers ``model_prediction_bucket{namespace,model,version,le}`` in the
data plane's registry, so the same /metrics Prometheus scrapes carries it, and every
250 ms emits, for each version, as many predictions as the data plane's shares give it.
Counts are deterministic (each bucket's expected count with a carried remainder, no
random draws), so a PSI verdict in an e2e test is too.

A version's prediction scores in [0, 1] follow a fixed 10-bucket profile moved up by
``shift`` buckets (``profile``); ``shift=0`` for every version is "predicts alike".
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from prometheus_client import Histogram

from harness.dataplane import DataPlane

BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BASE = (0.05, 0.10, 0.15, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02)


def profile(shift: float) -> list[float]:
    """Bucket probabilities (10 buckets over [0, 1]) of the base profile moved up by
    ``shift`` >= 0 buckets: the whole-bucket part moves every bucket's mass, the
    fractional part moves that fraction one bucket further; the last bucket keeps what
    would move past it."""
    whole, part = int(shift), shift - int(shift)
    last = len(BASE) - 1
    probs = [0.0] * len(BASE)
    for i, p in enumerate(BASE):
        probs[min(i + whole, last)] += p * (1 - part)
        probs[min(i + whole + 1, last)] += p * part
    return probs


@dataclass
class Predictions:
    dataplane: DataPlane
    shift: dict[str, float] = field(default_factory=dict)  # version -> shift (default 0)

    def __post_init__(self) -> None:
        self.histogram = Histogram(
            "model_prediction",
            "prediction scores",
            ["namespace", "model", "version"],
            buckets=BUCKETS,
            registry=self.dataplane.registry,
        )
        self._carry: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()

    def start(self) -> Predictions:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        deadline = time.monotonic() + self.dataplane.limit_s
        last = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.25)
            now = time.monotonic()
            dt, last = now - last, now
            for version, share in dict(self.dataplane.shares).items():
                self._emit(version, self.dataplane.rate * dt * share)

    def _emit(self, version: str, expected: float) -> None:
        h = self.histogram.labels(
            namespace=self.dataplane.namespace, model=self.dataplane.model, version=version
        )
        for i, p in enumerate(profile(self.shift.get(version, 0.0))):
            amount = expected * p + self._carry.get((version, i), 0.0)
            n = int(amount)
            self._carry[(version, i)] = amount - n
            score = BUCKETS[i] - 0.05  # the bucket's middle
            for _ in range(n):
                h.observe(score)
