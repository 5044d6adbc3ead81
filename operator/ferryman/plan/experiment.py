"""The abTest strategy's assignment of users to variants, as data a router renders
(``route.UserMatch``), and whether a Rollout's abTest can run at all (``refusal``).

Assignment is a match on one request header, so it is deterministic and sticky per user
without any state: the same header value always takes the same branch, on every proxy
replica and across operator restarts (nothing is stored, nothing is random).

- An explicit cohort by header: the header equals a value (``exact``).
- An explicit cohort by cookie: Gateway API has no cookie matcher, so it is an RE2
  regular expression over the ``Cookie`` header: the cookie ``name=value`` at the start
  of the header or after a ``;``, followed by the end or a ``;``.
- A percent of users by a user id in a header or cookie: the id's **last two
  characters**, read as hexadecimal digits (either case), pick one of 256 buckets; the
  first ``k = round(percent * 256 / 100)`` buckets see the candidate. The share written is
  ``k / 256``, a multiple of 1/256 (0.39%) within 1/512 (0.2 percentage points) of the
  percent asked; over ids whose trailing characters are uniform hex digits (UUIDs,
  hashes) the share of users is ``k / 256`` up to sampling noise
  (tests/unit/test_abtest_stickiness.py measures it over 100,000 ids with RE2). An id
  that does not end in two hex digits sees the stable version.

Every pattern is anchored at both ends (``^...$``), so it means the same whether the data
plane takes a full match (Envoy's RE2 ``safe_regex``, Istio) or a search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ferryman.api.common import clip
from ferryman.api.rollout import RolloutSpec
from ferryman.api.rollout_experiment import (
    ExperimentStatus,
    Objective,
    Unit,
    Users,
    VariantFigures,
)
from ferryman.plan.route import RouterCapabilities, UserMatch

if TYPE_CHECKING:
    # numpy and scipy cost ~40 MB at startup: loaded at the first look, never by an
    # operator whose Rollouts run no abTest.
    from ferryman.analysis import sequential

BUCKETS = 256  # two hex digits
COOKIE_HEADER = "cookie"
_HEX_DIGITS = "0123456789abcdef"
# Regex metacharacters that can occur in the values the API admits (api.rollout_experiment).
_META = set(".+*?()[]{}|^$\\")


def escape(text: str) -> str:
    """``text`` as an RE2 literal (metacharacters backslash-escaped)."""
    return "".join("\\" + c if c in _META else c for c in text)


def bucket_count(percent: int) -> int:
    """How many of the 256 buckets see the candidate for ``percent`` (1-99): the nearest
    whole number, at least 1 and at most 255."""
    return min(BUCKETS - 1, max(1, round(percent * BUCKETS / 100)))


def _hex_class(lo: int, hi: int) -> str:
    """A character class for the hex digits with values lo..hi (inclusive), both cases."""
    digits = [d for d in range(lo, hi + 1)]
    low = [d for d in digits if d < 10]
    letters = [d for d in digits if d >= 10]
    parts: list[str] = []

    def span(chars: str, a: int, b: int) -> str:
        return chars[a] if a == b else f"{chars[a]}-{chars[b]}"

    if low:
        parts.append(span(_HEX_DIGITS, low[0], low[-1]))
    if letters:
        parts.append(span(_HEX_DIGITS, letters[0], letters[-1]))
        parts.append(span(_HEX_DIGITS.upper(), letters[0], letters[-1]))
    return "[" + "".join(parts) + "]"


def trailing_hex(buckets: int) -> str:
    """RE2 (unanchored) matching two hex digits whose value is below ``buckets``
    (1..255): ``[0-3][0-9a-fA-F]`` for 64, ``[0-1][0-9a-fA-F]|2[0-5]`` for 38."""
    if not 1 <= buckets < BUCKETS:
        raise ValueError(f"buckets must be in 1..255, got {buckets}")
    full, rest = divmod(buckets, 16)
    alternatives: list[str] = []
    if full:
        alternatives.append(_hex_class(0, full - 1) + _hex_class(0, 15))
    if rest:
        alternatives.append(_hex_class(full, full) + _hex_class(0, rest - 1))
    return "|".join(alternatives)


def cookie_pattern(name: str, value: str) -> str:
    """RE2 over a whole ``Cookie`` header: cookie ``name`` whose value fully matches the
    (unanchored) pattern ``value``, as the first cookie or after a ``;``."""
    return rf"^(.*;)?[ \t]*{escape(name)}=({value})[ \t]*(;.*)?$"


def user_match(users: Users) -> UserMatch:
    """The match that sends a request to the candidate (see the module docstring)."""
    if users.header is not None:
        return UserMatch(header=users.header.name, exact=users.header.value)
    if users.cookie is not None:
        c = users.cookie
        return UserMatch(header=COOKIE_HEADER, regex=cookie_pattern(c.name, escape(c.value)))
    share = users.percent_of_users
    assert share is not None  # the CRD: exactly one of header, cookie, percentOfUsers
    k = bucket_count(share.percent)
    tail = f"({trailing_hex(k)})"
    uid = share.user_id
    if uid.header is not None:
        return UserMatch(header=uid.header, regex=f"^.*{tail}$", share=k / BUCKETS)
    assert uid.cookie is not None
    return UserMatch(
        header=COOKIE_HEADER,
        regex=cookie_pattern(uid.cookie, f"[^;]*{tail}"),
        share=k / BUCKETS,
    )


def refusal(spec: RolloutSpec, capabilities: RouterCapabilities) -> str | None:
    """Why this Rollout's abTest cannot run (the Rollout is then ``Invalid`` with this
    message, and nothing changes in traffic); None when it can, or is not an abTest."""
    if spec.strategy.ab_test is None:
        return None
    if not capabilities.header_match:
        return (
            "strategy.abTest needs a router that can route by header or cookie (gatewayAPI "
            "or istio); trafficRouting.service splits by replica ratio only"
        )
    owned = spec.traffic_routing.user_owned_route
    if owned is not None:
        return (
            f"strategy.abTest on a route you own ({owned}) is not supported yet: name "
            "parentRefs or hosts so ferryman creates the route"
        )
    return None


@dataclass(frozen=True)
class Counts:
    """One variant's objective counters as Prometheus answered them (None: no data).

    ``users`` and ``successes`` for unit users (one trial per user). For unit requests
    also ``requests`` (trials), and the per-user sums of the delta method:
    ``requests_squared`` (sum of x_i^2), ``successes_squared`` (sum of y_i^2) and
    ``cross`` (sum of x_i * y_i), with ``users`` the number of users n."""

    users: float | None
    successes: float | None
    requests: float | None = None
    requests_squared: float | None = None
    successes_squared: float | None = None
    cross: float | None = None


def design(objective: Objective) -> sequential.Design:
    """The verdict's design from the objective (``analysis.sequential.Design``)."""
    from ferryman.analysis import sequential

    return sequential.Design(
        direction=sequential.Direction(objective.direction),
        mde=objective.mde,
        alpha=objective.alpha,
        power=objective.power,
        min_users=objective.min_users,
    )


def _arm(counts: Counts, what: str, unit: Unit) -> sequential.Arm | str:
    """The verdict's arm from one variant's counts, or why they cannot be used."""
    from ferryman.analysis import sequential

    u, k = counts.users, counts.successes
    if unit == Unit.REQUESTS:
        sums = {
            "users": u,
            "requests": counts.requests,
            "successes": k,
            "requestsSquared": counts.requests_squared,
            "successesSquared": counts.successes_squared,
            "requestsTimesSuccesses": counts.cross,
        }
        missing = [name for name, v in sums.items() if v is None]
        if missing:
            return f"no data for the {what}'s {', '.join(missing)} yet"
        values = [float(v) for v in sums.values() if v is not None]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            return f"the {what}'s counts are not usable ({sums})"
        n, x, y, xx, yy, xy = values
        try:
            # Counters summed by PromQL are whole numbers up to float noise.
            return sequential.Arm.clustered(
                users=round(n), trials=x, successes=y, trials_sq=xx, successes_sq=yy, cross=xy
            )
        except ValueError as e:  # sums no set of users can have (scraped at other instants)
            return f"the {what}'s per-user sums are not consistent: {e}"
    if u is None or k is None:
        return f"no data for the {what}'s users or successes yet"
    if not (math.isfinite(u) and math.isfinite(k)) or u < 0 or k < 0:
        return f"the {what}'s counts are not usable (users {u}, successes {k})"
    # Counters summed by PromQL are whole numbers up to float noise; more successes than
    # users (counters scraped at different instants) count as every user succeeding.
    users = round(u)
    return sequential.Arm.per_user(users=users, successes=min(round(k), users))


def _fell(arm: sequential.Arm, before: VariantFigures) -> str | None:
    """Which of an arm's cumulative counts is below the last counted look's, if any:
    counters since the experiment began never fall, so a look whose sums did counts a
    different (smaller) sample than the running p-value and interval were kept over."""
    now = {"users": arm.users, "successes": round(arm.successes)}
    was = {"users": before.users, "successes": before.successes}
    if before.trials is not None:  # unit requests
        now["requests"], was["requests"] = round(arm.trials), before.trials
    fell = [name for name in now if now[name] < was[name]]
    return ", ".join(f"{name} ({was[name]} -> {now[name]})" for name in fell) or None


def look(
    objective: Objective,
    stable: Counts,
    candidate: Counts,
    previous: ExperimentStatus | None,
    *,
    deadline: bool,
    now: datetime,
) -> ExperimentStatus | str:
    """The verdict at this look (``sequential.evaluate``), going on from ``previous``
    (its running p-value and interval), as the status keeps it; a message instead when
    the counts are unusable (no data yet, NaN, negative, per-user sums no users can
    have): that look does not count. ``objective.unit`` says which counts are read:
    users and successes (``Arm.per_user``), or all six per-user sums
    (``Arm.clustered``, the delta method)."""
    from ferryman.analysis import sequential

    unit = objective.unit
    arms = _arm(stable, "stable", unit), _arm(candidate, "candidate", unit)
    for arm in arms:
        if isinstance(arm, str):
            return arm
    s_arm, c_arm = arms
    assert not isinstance(s_arm, str) and not isinstance(c_arm, str)
    if previous is not None:
        for what, arm, before in (
            ("stable", s_arm, previous.stable),
            ("candidate", c_arm, previous.candidate),
        ):
            fell = _fell(arm, before)
            if fell:
                return (
                    f"the {what}'s {fell} fell since the last look (a counter reset: a "
                    "restarted replica?): looks count again once above it"
                )
    running = None
    if previous is not None:
        interval = previous.interval
        running = sequential.Running(
            previous.p_value, (interval[0], interval[1]) if interval else None
        )
    result = sequential.evaluate(
        s_arm, c_arm, design(objective), previous=running, deadline=deadline
    )

    def figures(a: sequential.Arm) -> VariantFigures:
        trials = round(a.trials) if unit == Unit.REQUESTS else None
        return VariantFigures(
            users=a.users, successes=round(a.successes), trials=trials, rate=a.rate
        )

    # The unit is the one the objective declares: requests whose users each sent one
    # are still requests (sequential.Arm.unit would call them users).
    counted = sequential.UNIT_REQUESTS if unit == Unit.REQUESTS else sequential.UNIT_USERS
    return ExperimentStatus(
        outcome=result.outcome.value,
        unit=counted,
        stable=figures(s_arm),
        candidate=figures(c_arm),
        difference=result.difference,
        interval=list(result.interval) if result.interval is not None else None,
        p_value=result.p_value,
        e_value=result.e_value if math.isfinite(result.e_value) else None,
        users_needed=result.users_needed,
        looks=(previous.looks if previous else 0) + 1,
        message=clip(result.message, 512),
        at=now,
    )
