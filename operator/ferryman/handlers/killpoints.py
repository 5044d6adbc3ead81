"""A test-only hook: ``FERRYMAN_TEST_KILL_AT`` (comma-separated point names, each
optionally ``:N`` for the N-th hit; read at start, off by default) makes the process exit
abruptly at named points so restart safety is tested at the worst moments:
``after-measurement`` (a round measured, its status not written), ``after-scale-up``,
``after-route-write``, ``before-status-write``.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def parse(value: str) -> dict[str, int]:
    """``a,b:3`` -> {a: 1, b: 3}: exit at the first hit of ``a`` or the third of ``b``."""
    points: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, _, count = item.partition(":")
        points[name] = int(count or 1)
    return points


KILL_AT = parse(os.environ.get("FERRYMAN_TEST_KILL_AT", ""))
_hits: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Exit at once, like a node dying, when a test asked for it at this point."""
    if name not in KILL_AT:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= KILL_AT[name]:
        log.warning("FERRYMAN_TEST_KILL_AT: exiting at %s (hit %d)", name, _hits[name])
        os._exit(137)
