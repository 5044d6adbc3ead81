"""Go-style duration strings as users write them in Rollouts (30s, 2m, 1h30m, 250ms),
already validated by the CRD's pattern. The grammar is ``api.common``'s (``DURATION``,
built from ``DURATION_NUMBER``, ``DURATION_UNIT`` and ``DURATION_SECONDS``): what the CRD
accepts is exactly what this parses."""

from __future__ import annotations

import re
from datetime import timedelta

from ferryman.api.common import DURATION, DURATION_NUMBER, DURATION_SECONDS, DURATION_UNIT

_WHOLE = re.compile(DURATION)
_PART = re.compile(f"(?P<number>{DURATION_NUMBER})(?P<unit>{DURATION_UNIT})")


def parse_duration(text: str) -> timedelta:
    """``text`` (e.g. ``1h30m``) as a timedelta; ValueError when it is not a duration
    by the CRD's pattern."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(
        seconds=sum(float(m["number"]) * DURATION_SECONDS[m["unit"]] for m in _PART.finditer(text))
    )
