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
MAX_ACTION_NAME = 32  # status.lastAction.action (the annotation is free text)
# A query quoted in a reason or message is cut to this many characters: the full query is
# in spec.analysis, the rendered one in the measurement.
QUOTED_QUERY = 256
MAX_ACTION_MESSAGE = 1024
# A measurement's fields (status.analysis.measurements[]): the metric's name (as in
# spec.analysis.metrics[].name), the threshold text it was judged by, the message; the
# rendered query is bounded by MAX_QUERY. The model clips to these where a measurement is
# built (handlers.analysis, analysis.evaluate), the CRD's maxLength is the same number.
MAX_METRIC_NAME = 63
MAX_METRIC_QUERY = 4096  # spec.analysis.metrics[].query, as written (before rendering)
MAX_THRESHOLD = 256
MAX_MEASUREMENT_MESSAGE = 1024
# spec.replicas: the scale subresource's specReplicasPath. A scale write above it is
# refused by the schema (422), as any edit would be; nothing else bounds it.
MAX_REPLICAS = 1000
# status.selector: "ferryman.dev/rollout=<63>,ferryman.dev/version in (<63>,<63>)" fits.
MAX_SELECTOR = 512
