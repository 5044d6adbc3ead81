"""What an application exports for an abTest with ``objective.unit: requests`` (issue 16
§1, docs/experiments.md "Counting requests: the delta method"): six counters per version
whose values are the per-user sums the delta-method variance needs, kept with ordinary
Prometheus counter increments from the user's own running counts, so no per-user label
ever reaches Prometheus.

With x the user's requests so far and y their successes so far (the application keeps
these two numbers per user, e.g. in the session it already has):

- a user's first request: ``users`` += 1;
- a request (x -> x + 1): ``requests`` += 1, ``requests_squared`` += 2x + 1 (since
  (x + 1)^2 - x^2 = 2x + 1), ``requests_times_successes`` += y;
- a success (y -> y + 1, after its request was counted): ``successes`` += 1,
  ``successes_squared`` += 2y + 1, ``requests_times_successes`` += x.

``PerUserSums`` is that bookkeeping, pure (a dict of totals, no Prometheus), so a unit
test checks it against sums over per-user counts and ``harness.abusers`` feeds its
increments to prometheus-client counters."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The counters, in the order of ``PerUserSums.totals``; ``harness.abusers`` exports
#: them as ``app_ab_<name>_total``.
NAMES = (
    "users",
    "requests",
    "successes",
    "requests_squared",
    "successes_squared",
    "requests_times_successes",
)


@dataclass
class PerUserSums:
    """The application's side: per-user running counts and the six counter totals."""

    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (x, y)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NAMES, 0))

    def request(self, user: str, *, success: bool) -> dict[str, int]:
        """Count one request of ``user`` (and its success): the counter increments,
        name -> amount (also added to ``totals``)."""
        inc = dict.fromkeys(NAMES, 0)
        x, y = self.seen.get(user, (0, 0))
        if user not in self.seen:
            inc["users"] += 1
        inc["requests"] += 1
        inc["requests_squared"] += 2 * x + 1
        inc["requests_times_successes"] += y
        x += 1
        if success:
            inc["successes"] += 1
            inc["successes_squared"] += 2 * y + 1
            inc["requests_times_successes"] += x
            y += 1
        self.seen[user] = (x, y)
        for name, amount in inc.items():
            self.totals[name] += amount
        return inc


def direct(per_user: list[tuple[int, int]]) -> dict[str, int]:
    """The same six sums computed from each user's final (requests, successes)."""
    return {
        "users": len(per_user),
        "requests": sum(x for x, _ in per_user),
        "successes": sum(y for _, y in per_user),
        "requests_squared": sum(x * x for x, _ in per_user),
        "successes_squared": sum(y * y for _, y in per_user),
        "requests_times_successes": sum(x * y for x, y in per_user),
    }
