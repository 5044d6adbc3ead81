"""Which namespaces are being deleted, as their refusals tell (no kopf here: the executor
layer, ``handlers.applied``, asks too; ``handlers.namespaces`` acts on it).

While a namespace terminates, the API server refuses every create in it with HTTP 403
Forbidden, "unable to create new content in namespace <ns> because it is being
terminated" (the NamespaceLifecycle admission plugin; updates and deletes still work).
The first such refusal seen (``noted``) marks the namespace terminating for ``MEMORY``
seconds (a namespace of that name created again later is served again after that).
"""

from __future__ import annotations

import re
import time

# The API server's words (k8s.io/apiserver NamespaceLifecycle admission, Kubernetes 1.36).
REFUSAL = re.compile(
    r"unable to create new content in namespace ([a-z0-9]([-a-z0-9]*[a-z0-9])?) "
    r"because it is being terminated"
)
MEMORY = 600.0  # seconds a namespace stays marked after its last refusal
_TERMINATING: dict[str, float] = {}  # namespace -> monotonic time of its last refusal


def noted(text: str, now: float | None = None) -> str | None:
    """If ``text`` quotes a terminating namespace's refusal, mark that namespace (at
    monotonic ``now``, default the clock) and return its name; else None."""
    found = REFUSAL.search(text)
    if found is None:
        return None
    _TERMINATING[found.group(1)] = time.monotonic() if now is None else now
    return found.group(1)


def terminating(namespace: str | None, now: float | None = None) -> bool:
    """Whether ``namespace`` refused a create as terminating in the last ``MEMORY`` s."""
    at = _TERMINATING.get(namespace or "")
    return at is not None and (time.monotonic() if now is None else now) - at <= MEMORY
