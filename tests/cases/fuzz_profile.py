"""How many fuzzed manifests a run tries, and how reproducibly (issue 13 §3).

``make test`` (CI): derandomized, so every run tries the same manifests (Hypothesis
seeds its generator from the test's name), and no example database, so nothing is
written into the repository. ``make fuzz`` (``FERRYMAN_FUZZ=1``): ten times the examples
(``FERRYMAN_FUZZ_SCALE``), a random seed unless ``FERRYMAN_FUZZ_SEED`` is set, printed so
a failure can be replayed, and an example database in the system's temporary directory,
outside the repository, so a failure found once is tried first next time.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

F = TypeVar("F", bound=Callable[..., Any])

FUZZ = os.environ.get("FERRYMAN_FUZZ") == "1"
SCALE = int(os.environ.get("FERRYMAN_FUZZ_SCALE", "10"))
SEED = int(os.environ.get("FERRYMAN_FUZZ_SEED") or random.randrange(2**32)) if FUZZ else None
DATABASE = Path(tempfile.gettempdir()) / "ferryman-hypothesis"

# The tests reuse one namespace (function-scoped fixtures) across examples on purpose.
_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


def describe() -> str:
    """One line for the test's output: how this run chose its examples."""
    if FUZZ:
        return f"hypothesis: make fuzz, seed {SEED} (FERRYMAN_FUZZ_SEED={SEED} replays it)"
    return "hypothesis: CI profile, derandomized (the same examples every run)"


def fuzz(examples: int, *, shrink: bool = True) -> Callable[[F], F]:
    """Settings for a fuzz test: ``examples`` per ``make test`` run, ``SCALE`` times as
    many under ``make fuzz``."""

    def apply(test: F) -> F:
        phases = list(Phase) if shrink else [p for p in Phase if p != Phase.shrink]
        if FUZZ:
            test = seed(SEED)(test)
            return settings(
                max_examples=examples * SCALE,
                database=DirectoryBasedExampleDatabase(DATABASE),
                deadline=None,
                suppress_health_check=_CHECKS,
                phases=phases,
                print_blob=True,
            )(test)
        return settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=_CHECKS,
            phases=phases,
        )(test)

    return apply
