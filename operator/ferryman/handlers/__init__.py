"""kopf registrations: thin glue that reads, asks ``plan`` what to do, and writes
through ``kube``. Importing this package registers every handler."""

from ferryman.handlers import (
    approvals,
    identity,
    lifecycle,
    modelversions,
    namespaces,
    notifications,
    rollouts,
    shared_wakeups,
)

__all__ = [
    "approvals",
    "identity",
    "lifecycle",
    "modelversions",
    "namespaces",
    "notifications",
    "rollouts",
    "shared_wakeups",
]
