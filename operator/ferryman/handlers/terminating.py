"""Which namespaces are being deleted, as their refusals tell (no kopf here: the executor
layer, ``handlers.applied``, asks too; ``handlers.namespaces`` and ``handlers.rollouts``
act on it).

While a namespace terminates, the API server refuses every create in it with HTTP 403
Forbidden, "unable to create new content in namespace <ns> because it is being
terminated" (the NamespaceLifecycle admission plugin; updates and deletes still work).
Each such refusal seen (``noted``) marks the namespace terminating for ``MEMORY`` seconds
(a terminating namespace keeps refusing, so the mark lasts as long as it does). An object
created after the mark is in a new namespace of that name, and is not affected by it
(``terminating``'s ``created``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

# The API server's words (k8s.io/apiserver NamespaceLifecycle admission, Kubernetes 1.36).
REFUSAL = re.compile(
    r"unable to create new content in namespace ([a-z0-9]([-a-z0-9]*[a-z0-9])?) "
    r"because it is being terminated"
)
MEMORY = 60.0  # seconds a namespace stays marked after its last refusal
# namespace -> (monotonic seconds, wall-clock time) of its last refusal
_TERMINATING: dict[str, tuple[float, datetime]] = {}


def noted(text: str, now: float | None = None) -> str | None:
    """If ``text`` quotes a terminating namespace's refusal, mark that namespace (at
    monotonic ``now``, default the clock) and return its name; else None."""
    found = REFUSAL.search(text)
    if found is None:
        return None
    _TERMINATING[found.group(1)] = (
        time.monotonic() if now is None else now,
        datetime.now(UTC),
    )
    return found.group(1)


def terminating(
    namespace: str | None, now: float | None = None, created: datetime | str | None = None
) -> bool:
    """Whether ``namespace`` refused a create as terminating in the last ``MEMORY``
    seconds (monotonic ``now``, default the clock), for an object ``created`` at that
    time (a datetime or an RFC 3339 text; None: unknown, taken as older): one created
    after the refusal is in a new namespace of that name, and False."""
    mark = _TERMINATING.get(namespace or "")
    if mark is None or (time.monotonic() if now is None else now) - mark[0] > MEMORY:
        return False
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    return created is None or created <= mark[1]
