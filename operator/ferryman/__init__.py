"""ferryman: a Kubernetes operator that carries trained ML model versions into production.

Teams register each trained model as an immutable ``ModelVersion``; a ``Rollout`` moves
live traffic to a new version (canary, blue-green or shadow), watches Prometheus while it
does, and returns traffic to the previous stable version by itself when a metric crosses
its threshold. See ``README.md`` and ``docs/``.
"""

__version__ = "0.1.0"
