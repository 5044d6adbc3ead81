"""review14: reproductions of faults found in the merged work of issues 14 and 16.

Each test asserts what should hold and is marked ``xfail(strict=True)`` while the fault
is there: it fails today, and the mark turns into an error once the fault is fixed (then
drop the mark).
"""

from __future__ import annotations

import pytest

from ferryman.analysis import sequential
from ferryman.analysis.sequential import Arm, Design, Direction, Outcome

# --- sequential A/B verdict ------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="review14 R3: at the deadline the verdict stays Undecided when an arm has "
    "fewer than min_successes successes (a candidate converting nobody is never judged)",
)
def test_deadline_ends_an_experiment_whose_candidate_converts_nobody() -> None:
    design = Design(direction=Direction.HIGHER, mde=0.01)
    stable = Arm.per_user(users=20_000, successes=10_000)
    candidate = Arm.per_user(users=20_000, successes=0)
    result = sequential.evaluate(stable, candidate, design, deadline=True)
    # 0 of 20,000 against 10,000 of 20,000: the stable wins; at the very least the
    # deadline ends the experiment (the issue: "no significant difference by the deadline").
    assert result.outcome in (Outcome.STABLE_WINS, Outcome.NO_DIFFERENCE), result.message


@pytest.mark.xfail(
    strict=True,
    reason="review14 R3: max_users reached but too few users/successes in an arm: "
    "Undecided forever instead of NoDifference",
)
def test_deadline_with_too_few_users_is_no_difference() -> None:
    design = Design(direction=Direction.HIGHER, mde=0.01, min_users=100)
    stable = Arm.per_user(users=1_000, successes=100)
    candidate = Arm.per_user(users=50, successes=5)  # a tiny share that never grew
    result = sequential.evaluate(stable, candidate, design, deadline=True)
    assert result.outcome == Outcome.NO_DIFFERENCE, result.message
