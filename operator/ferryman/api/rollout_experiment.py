"""``spec.strategy.abTest``: an A/B test in which the candidate serves a share of *users*
(not of requests), assigned by a request header or cookie so the same user always sees
the same variant, and a statistical verdict on a business objective
(``analysis.sequential``, docs/experiments.md).

Who sees the candidate (``users``, exactly one of):

- ``header``: an explicit cohort, requests whose header equals a value (beta testers);
- ``cookie``: an explicit cohort, requests whose cookie equals a value (a regular
  expression over the ``Cookie`` header: Gateway API has no cookie matcher);
- ``percentOfUsers``: a share of users picked by the trailing characters of a user id
  carried in a header or cookie (``routing.abtest`` renders the regular expressions;
  the share is a multiple of 1/256).

Requests without the header or cookie go to the stable version. The guardrails are the
usual ``spec.analysis.metrics`` (they roll back as in a canary); the objective is two
queries counting users per variant (``unit: users``), or requests with the per-user sums
of the delta method (``unit: requests``).

Its own module so the experiment's API reads in one place; ``api.rollout_strategy`` names
it as one of the strategies.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from ferryman.api.common import ApiModel, cel, duration_rule, matches, model_rules, rules
from ferryman.api.rollout_limits import MAX_METRIC_QUERY

# Lowercase HTTP header names (HTTP/2 and Istio require lowercase; Gateway API's
# HTTPHeaderName is a superset). No pseudo-headers.
HEADER_NAME = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
# A cookie's name (RFC 6265 token, restricted to what needs no escaping care in a regex
# but '.', which routing.abtest escapes).
COOKIE_NAME = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# An exact cookie value: RFC 6265 cookie-octets without the ones a value rarely holds;
# routing.abtest escapes the regex metacharacters among them.
COOKIE_VALUE = r"^[A-Za-z0-9._~+/=:-]+$"
# An exact header value: visible ASCII and spaces, not starting or ending with a space
# (a proxy trims those, so the value could never match).
HEADER_VALUE = r"^[!-~]([ -~]*[!-~])?$"

HeaderName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        json_schema_extra=rules(
            cel(
                matches(HEADER_NAME),
                "abTest header names must be lowercase: letters, digits, '-' and '_' "
                "(e.g. x-user-id)",
            ),
            cel(
                "self != 'cookie'",
                "abTest: to match a cookie, use cookie (with the cookie's name), not a header "
                "named cookie",
            ),
        ),
    ),
]
CookieName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        json_schema_extra=rules(
            cel(
                matches(COOKIE_NAME),
                "abTest cookie names must be letters, digits, '-', '_' or '.' (e.g. uid)",
            )
        ),
    ),
]


class HeaderCohort(ApiModel):
    """Requests whose header ``name`` has exactly ``value`` (e.g. x-beta-tester: "true")."""

    name: HeaderName = Field(description="Header name, lowercase (e.g. x-beta-tester).")
    value: str = Field(
        min_length=1,
        max_length=1024,
        description="The exact value.",
        json_schema_extra=rules(
            cel(
                matches(HEADER_VALUE),
                "abTest header value must be visible ASCII characters (spaces only inside)",
            )
        ),
    )


class CookieCohort(ApiModel):
    """Requests carrying cookie ``name`` with exactly ``value`` (a regular expression over
    the Cookie header; docs/experiments.md lists its limits)."""

    name: CookieName = Field(description="Cookie name (e.g. beta).")
    value: str = Field(
        min_length=1,
        max_length=256,
        description="The exact value.",
        json_schema_extra=rules(
            cel(
                matches(COOKIE_VALUE),
                "abTest cookie value must be letters, digits or . _ ~ + / = : -",
            )
        ),
    )


class UserId(ApiModel):
    """Where the user id is: exactly one of a header or a cookie."""

    model_config = model_rules(
        cel(
            "[has(self.header), has(self.cookie)].exists_one(x, x)",
            "abTest userId needs exactly one of header or cookie",
        )
    )

    header: HeaderName | None = Field(None, description="Header carrying the id (x-user-id).")
    cookie: CookieName | None = Field(None, description="Cookie carrying the id (uid).")


class PercentOfUsers(ApiModel):
    """A share of users, by the last two hexadecimal digits of their id: ids whose last
    two characters are hex digits in the first ``round(percent * 256 / 100)`` of the 256
    values see the candidate. Ids must end in uniformly distributed hex digits (a UUID, a
    hash); an id that does not end in two hex digits sees the stable version."""

    percent: int = Field(
        ge=1,
        le=99,
        description="Percent of users for the candidate (1-99); the share written is a "
        "multiple of 1/256 within 0.2 percentage points of it.",
    )
    user_id: UserId = Field(description="Where the user id is.")


class Users(ApiModel):
    """Who sees the candidate: exactly one of header, cookie or percentOfUsers."""

    model_config = model_rules(
        cel(
            "[has(self.header), has(self.cookie), has(self.percentOfUsers)].exists_one(x, x)",
            "abTest.users needs exactly one of header, cookie or percentOfUsers",
        )
    )

    header: HeaderCohort | None = Field(None, description="An explicit cohort by header.")
    cookie: CookieCohort | None = Field(None, description="An explicit cohort by cookie.")
    percent_of_users: PercentOfUsers | None = Field(
        None, description="A share of users by the trailing digits of their id."
    )


class Direction(StrEnum):
    """The same spelling as ``analysis.sequential.Direction``."""

    HIGHER = "HigherIsBetter"
    LOWER = "LowerIsBetter"


class OnWin(StrEnum):
    PROMOTE = "promote"
    REPORT = "report"


Query = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_METRIC_QUERY,
        json_schema_extra=rules(cel(matches(r"\S"), "abTest objective query must not be empty")),
    ),
]


class Unit(StrEnum):
    """What one trial of the objective is: a user (``users``) or a request clustered within
    users (``requests``, the delta method)."""

    USERS = "users"
    REQUESTS = "requests"


class DeltaMethod(ApiModel):
    """The per-user sums the delta-method variance of a ratio of sums needs (A. Deng, U.
    Knoblich, J. Lu, KDD 2018; ``analysis.sequential``), each a PromQL query of a counter
    since the experiment began, templated like the objective's: with x_i the trials
    (requests) and y_i the successes of user i, ``users`` is n, ``trialsSquared`` is the
    sum of x_i^2, ``successesSquared`` the sum of y_i^2, ``trialsTimesSuccesses`` the sum
    of x_i * y_i (docs/experiments.md says how an application counts them)."""

    users: Query = Field(description="PromQL: users of {{version}} with at least one trial.")
    trials_squared: Query = Field(description="PromQL: sum over users of trials squared.")
    successes_squared: Query = Field(description="PromQL: sum over users of successes squared.")
    trials_times_successes: Query = Field(
        description="PromQL: sum over users of trials times successes."
    )


class Objective(ApiModel):
    """The business metric the verdict is on: a rate, successes over trials, per variant.

    With ``unit: users`` (the default) both queries count *users* since the experiment
    began (one trial per user, e.g. users exposed and users who converted after first
    exposure, counted by the application). With ``unit: requests`` they count requests
    and successful requests, and ``deltaMethod`` gives the per-user sums that account for
    the clustering of requests within users. Queries are templated like analysis queries
    ({{version}}, {{model}}, {{namespace}})."""

    model_config = model_rules(
        cel(
            "(has(self.unit) && self.unit == 'requests') == has(self.deltaMethod)",
            "abTest objective: unit requests needs deltaMethod (users, trialsSquared, "
            "successesSquared, trialsTimesSuccesses), and only unit requests takes it",
        )
    )

    unit: Unit = Field(
        Unit.USERS,
        description="users (default): one trial per user; requests: trials are requests, "
        "clustered within users (needs deltaMethod).",
    )
    successes: Query = Field(
        description="PromQL: users (unit users) or requests (unit requests) of {{version}} "
        "that succeeded (e.g. converted)."
    )
    trials: Query = Field(
        description="PromQL: users (unit users) or requests (unit requests) of {{version}}."
    )
    delta_method: DeltaMethod | None = Field(
        None, description="The per-user sums for unit requests (required with it)."
    )
    direction: Direction = Field(description="HigherIsBetter or LowerIsBetter.")
    mde: float = Field(
        gt=0,
        lt=1,
        description="Minimum detectable effect: an absolute difference of rates "
        "(0.01 = one percentage point).",
    )
    alpha: float = Field(0.05, gt=0, le=0.2, description="Significance level (default 0.05).")
    power: float = Field(
        0.8, ge=0.5, lt=1, description="Power wanted at the MDE, for usersNeeded (default 0.8)."
    )
    min_users: int = Field(
        100, ge=10, le=10_000_000, description="Users per variant before any verdict (default 100)."
    )


class ABTest(ApiModel):
    """The candidate serves a share of users, sticky per user, until a verdict on the
    objective (or ``duration``); requests without the header or cookie see the stable."""

    users: Users = Field(description="Who sees the candidate.")
    objective: Objective = Field(description="What the verdict is on.")
    duration: str | None = Field(
        None,
        max_length=32,
        description="Longest run, e.g. 336h; no significant difference by then: keep the "
        "stable and report. Without it: until a verdict.",
        json_schema_extra=rules(duration_rule("abTest.duration")),
    )
    on_candidate_wins: OnWin = Field(
        OnWin.PROMOTE,
        description="When the candidate wins: promote (default) or report only (the stable "
        "keeps serving everyone).",
    )


class VariantFigures(ApiModel):
    """One variant's counts since the experiment began, as the objective's queries read
    them: ``users``, ``successes`` and, for unit requests, ``trials`` (requests);
    ``rate`` = successes / trials (successes / users for unit users)."""

    users: int = Field(0, ge=0)
    successes: int = Field(0, ge=0)
    trials: int | None = Field(None, ge=0, description="Requests (unit requests only).")
    rate: float | None = None


class ExperimentClock(ApiModel):
    """How long the abTest's test has been held (a user's pause, an analysis hold), so
    that its ``duration`` counts only the time it ran: the deadline is ``stageSince +
    duration + heldSeconds`` (+ the hold in course). It belongs to the test that began at
    ``stageSince`` (a new test, a new clock), and lives in status so a restarted operator
    keeps it."""

    stage_since: datetime = Field(description="The status.stageSince this clock belongs to.")
    held_seconds: float = Field(0.0, ge=0, description="Seconds held, holds ended so far.")
    held_since: datetime | None = Field(None, description="When the hold in course began.")


class ExperimentStatus(ApiModel):
    """The abTest's verdict at its last look (``analysis.sequential``): per variant users,
    successes and rate; the difference (candidate minus stable) with its always-valid
    confidence interval, the always-valid p-value (running minimum: the next look goes on
    from it) and e-value, the users still needed for the wanted power at the MDE, and which
    unit is counted."""

    outcome: str = Field(
        max_length=64,
        description="CandidateWins, StableWins, NoDifference or NoSignificantDifferenceYet.",
    )
    unit: str = Field(max_length=128, description="What the verdict counts.")
    stable: VariantFigures = Field(description="The stable version's figures.")
    candidate: VariantFigures = Field(description="The candidate's figures.")
    difference: float | None = Field(None, description="Candidate rate minus stable rate.")
    interval: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[low, high]: the always-valid (1 - alpha) confidence interval of the "
        "difference, intersected over the looks so far.",
    )
    p_value: float = Field(1.0, ge=0, le=1, description="Always-valid p-value.")
    e_value: float | None = Field(None, ge=0, description="This look's mixture likelihood ratio.")
    users_needed: int | None = Field(
        None, ge=0, description="More users (both variants) for the wanted power at the MDE."
    )
    looks: int = Field(0, ge=0, description="Looks taken so far.")
    message: str = Field("", max_length=512)
    at: datetime | None = Field(None, description="When the last look was taken.")
