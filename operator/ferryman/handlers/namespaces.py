"""Namespaces being deleted: their refusals are expected, not errors.

While a namespace terminates, the API server refuses every create in it with HTTP 403
Forbidden, "unable to create new content in namespace <ns> because it is being
terminated" (the namespace lifecycle admission plugin; updates and deletes still work).
A Rollout caught mid-rollout then has its re-creates refused, and every Event about it
too: kopf retries an Event's 403 up to 9 times over about a minute, logging each
attempt at ERROR (a 403 can be a passing state during an API server upgrade). None of
that is a fault: the namespace controller is deleting everything, and the Rollout's
finalizer runs like any deletion's.

So the first such refusal seen (``handlers.terminating.noted``: an HTTP 403 to ferryman's
own applies, or a kopf log record of a 403 to a request in that namespace, naming that
namespace) marks the namespace terminating; while it is marked:
- ferryman's own refused writes are logged at INFO (``handlers.applied``), its
  Rollouts there created before the mark do not reconcile (``handlers.rollouts``: no
  write would be accepted, and every object the namespace controller deletes would wake
  them to try; they are woken when the mark lapses), and its Events
  about objects there are not posted (``post``);
- kopf's records quoting such a refusal are DEBUG (``Quiet``), and kopf does not post
  its log messages about objects there as Events (``Skip``), so no Event is retried.
``install`` attaches both filters (at operator startup).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import kopf

from ferryman.handlers.terminating import FORBIDDEN, REFUSAL, noted, terminating

KOPF_LOGGERS = ("kopf._core.engines.posting", "kopf.objects", "kopf._cogs.clients.api")


def post(body: Any, *, type: str, reason: str, message: str) -> None:
    """``kopf.event``, unless the object's namespace is terminating (module docstring)."""
    meta = body.get("metadata") or {}
    if not terminating(meta.get("namespace"), created=meta.get("creationTimestamp")):
        kopf.event(body, type=type, reason=reason, message=message)


# kopf's request records: "... POST https://.../namespaces/<ns>/events -> APIForbiddenError(
# '<message>', {..., 'code': 403})" (kopf._cogs.clients.api)
_REQUEST_NS = re.compile(r"/namespaces/([a-z0-9]([-a-z0-9]*[a-z0-9])?)/")
_CODE_403 = re.compile(r"APIForbiddenError\(|'code': 403\b")


class Quiet(logging.Filter):
    """kopf's records that quote a terminating namespace's refusal become DEBUG (and are
    dropped unless their logger logs DEBUG). The namespace is marked only by a record of
    a 403 to a request in that namespace (``noted``'s rule); text alone marks nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        text = record.getMessage()
        if REFUSAL.search(text) is None:
            return True
        path = _REQUEST_NS.search(text)
        if path is not None and _CODE_403.search(text):
            noted(text, path.group(1), FORBIDDEN)
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class Skip(logging.Filter):
    """Drop kopf's log records about objects in a terminating namespace from its
    Event poster (they would be refused and retried); they are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        ref = getattr(record, "k8s_ref", None)
        return not (isinstance(ref, dict) and terminating(ref.get("namespace")))


def install() -> None:
    """Attach ``Quiet`` to kopf's loggers and ``Skip`` to its Event poster (once)."""
    for name in KOPF_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Quiet) for f in logger.filters):
            logger.addFilter(Quiet())
    for handler in logging.getLogger("kopf.objects").handlers:
        if type(handler).__name__ == "K8sPoster" and not any(
            isinstance(f, Skip) for f in handler.filters
        ):
            handler.addFilter(Skip())


@kopf.on.startup()
async def quiet_terminating(**_: Any) -> None:
    install()
