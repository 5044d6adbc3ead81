"""The bounds of a Rollout's fields: the CRD's ``maxItems`` / ``maxLength`` and what the
operator clips its own text to so a status write always fits them. One module so the
spec, the status and the state machine name each bound once.
"""

from __future__ import annotations

MAX_STEPS = 32
MAX_METRICS = 16
MAX_GATES = 16
MAX_MEASUREMENTS = 50
MAX_HISTORY = 100
MAX_QUERY = 8192
MAX_REASON = 2048
MAX_MESSAGE = 2048
MAX_ACTION_ID = 128
# A query quoted in a reason or message is cut to this many characters: the full query is
# in spec.analysis, the rendered one in the measurement.
QUOTED_QUERY = 256
MAX_ACTION_MESSAGE = 1024
