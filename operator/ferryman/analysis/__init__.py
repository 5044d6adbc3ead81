"""Analysis: metric providers (Prometheus first) behind a small Protocol, and the pure
evaluation of measurements into verdicts and counts (``templates``, ``evaluate``)."""
