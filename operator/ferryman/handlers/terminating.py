"""Which namespaces are being deleted, as their refusals tell (no kopf here: the executor
layer, ``handlers.applied``, asks too; ``handlers.namespaces`` and ``handlers.rollouts``
act on it).

While a namespace terminates, the API server refuses every create in it with HTTP 403
Forbidden, "unable to create new content in namespace <ns> because it is being
terminated" (the NamespaceLifecycle admission plugin; updates and deletes still work).
Each such refusal seen (``noted``) marks the namespace terminating for ``MEMORY`` seconds
(a terminating namespace keeps refusing, so the mark lasts as long as it does). Only an
HTTP 403 whose message names the refused object's own namespace marks it: the same words
quoted in another answer (a 422 echoing user text, another namespace's name) mark nothing.
An object created after the mark is in a new namespace of that name, and is not affected
by it (``terminating``'s ``created``). creationTimestamp has whole seconds, on the API
server's clock: an object created at or after the mark's whole second minus ``MARGIN``
counts as new (a wrongly-new one costs one refused reconcile, which marks again).
``lapses_in`` says when a mark ends, so what it held back is woken then.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

# The API server's words (k8s.io/apiserver NamespaceLifecycle admission, Kubernetes 1.36).
REFUSAL = re.compile(
    r"unable to create new content in namespace ([a-z0-9]([-a-z0-9]*[a-z0-9])?) "
    r"because it is being terminated"
)
MEMORY = 60.0  # seconds a namespace stays marked after its last refusal
# seconds before the mark's whole second from which an object counts as new (whole-second
# creationTimestamp; the API server's clock against ours)
MARGIN = 2.0
FORBIDDEN = 403  # NamespaceLifecycle's status
# namespace -> (monotonic seconds, wall-clock time) of its last refusal
_TERMINATING: dict[str, tuple[float, datetime]] = {}


def noted(text: str, namespace: str | None, status: int, now: float | None = None) -> str | None:
    """If ``text``, an HTTP ``status`` refusal of an object in ``namespace``, is that
    namespace's own terminating refusal (HTTP 403 naming ``namespace``), mark it (at
    monotonic ``now``, default the clock) and return its name; else None."""
    found = REFUSAL.search(text)
    if status != FORBIDDEN or found is None or not namespace or found.group(1) != namespace:
        return None
    _TERMINATING[namespace] = (time.monotonic() if now is None else now, datetime.now(UTC))
    return namespace


def _live(namespace: str | None, now: float | None) -> tuple[float, datetime] | None:
    mark = _TERMINATING.get(namespace or "")
    if mark is None or (time.monotonic() if now is None else now) - mark[0] > MEMORY:
        return None
    return mark


def terminating(
    namespace: str | None, now: float | None = None, created: datetime | str | None = None
) -> bool:
    """Whether ``namespace`` refused a create as terminating in the last ``MEMORY``
    seconds (monotonic ``now``, default the clock), for an object ``created`` at that
    time (a datetime or an RFC 3339 text; None: unknown, taken as older). One created at
    or after the mark's whole second minus ``MARGIN`` is taken as in a new namespace of
    that name (module docstring), and False."""
    mark = _live(namespace, now)
    if mark is None:
        return False
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    if created is None:
        return True
    since = mark[1].replace(microsecond=0) - timedelta(seconds=MARGIN)
    return created < since


def lapses_in(namespace: str | None, now: float | None = None) -> float | None:
    """Seconds (monotonic ``now``, default the clock) until ``namespace``'s mark lapses,
    a little after it; None when it is not marked."""
    mark = _live(namespace, now)
    if mark is None:
        return None
    return mark[0] + MEMORY - (time.monotonic() if now is None else now) + 1.0


def held_back(namespace: str | None, created: datetime | str | None) -> float | None:
    """For a Rollout in ``namespace`` ``created`` then: None when it may reconcile, else
    the seconds until it should try again (the mark lapses; at least 1)."""
    if not terminating(namespace, created=created):
        return None
    return max(lapses_in(namespace) or 0.0, 1.0)
