"""kopf indexes of the objects ferryman writes, so a reconcile need not read them again.

Deployments, Services, PodDisruptionBudgets and every registered router's route objects
labelled ``app.kubernetes.io/managed-by: ferryman`` are indexed by (namespace, name), one
index per resource (``INDEXES``), each entry the object without its status and
managedFields, stamped with the monotonic time its watch event was handled
(``handlers.ledger.Entry``). ``lookup`` hands out only the entries that may be trusted
(``handlers.ledger``: an index lags the cluster, and kopf keeps an entry whose object
vanished during a re-list, which ``relisted`` lets it tell); an object left out is read
by whoever needs it.

The watches carry the label as a server-side selector (``label_selectors``): the API
server sends only ferryman's objects, not every Deployment and Service of the watched
namespaces for kopf to filter. Not the routes of routers that can share a route someone
else owns (``routing.SharingRouter``: HTTPRoutes, VirtualServices): a change of such a
route, which carries no label of ferryman's, must wake the Rollouts that name it
(``handlers.shared_wakeups``); routes are few, and the index keeps only ferryman's
(its handler's ``labels`` filter).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kopf

from ferryman.handlers.ledger import Entry, Ledger, trusted
from ferryman.plan import labels
from ferryman.routing import Watch, registered, watch_of

SELECTOR = f"{labels.MANAGED_BY}=ferryman"
KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "labels",
    "annotations",
    "ownerReferences",
)


@dataclass(frozen=True)
class Indexed:
    """One indexed resource: its watch, its kind and the index (kopf handler id)."""

    watch: Watch
    kind: str

    @property
    def id(self) -> str:
        return f"observed_{self.watch.plural}"

    @property
    def api_version(self) -> str:
        w = self.watch
        return f"{w.group}/{w.version}" if w.group else w.version


def _resources() -> list[Indexed]:
    found = [
        Indexed(Watch("apps", "v1", "deployments"), "Deployment"),
        Indexed(Watch("", "v1", "services"), "Service"),
        Indexed(Watch("policy", "v1", "poddisruptionbudgets"), "PodDisruptionBudget"),
    ]
    for router in registered():
        if all(i.watch != watch_of(router) for i in found):
            found.append(Indexed(watch_of(router), router.kind))
        # Companion route kinds of their own (a GRPCRoute: routing.base.CompanionRouter).
        for api_version, kind, plural in getattr(router, "companion_kinds", ()):
            group, _, version = api_version.rpartition("/")
            if all(i.watch != Watch(group, version, plural) for i in found):
                found.append(Indexed(Watch(group, version, plural), kind))
    return found


INDEXES = _resources()
# When the latest list of each index's resource began (monotonic seconds), by index id:
# an entry older than that was not in it (``ledger.trusted``, 3).
LISTED: dict[str, float] = {}
_LAST_LISTED: dict[str, float] = {}
LIST_GAP = 10.0  # seconds without a listed object that end a list
LIST_SLACK = 1.0  # seconds before a list's first object that the list counts from


def slim(body: Any, api_version: str, kind: str) -> dict[str, Any]:
    """``body`` (a kopf Body or a dict) as the index keeps it: every top-level field but
    status, metadata with only ``KEPT_METADATA``; apiVersion and kind set (list items
    lack them). A deep copy."""
    meta = body.get("metadata") or {}
    out: dict[str, Any] = {
        k: copy.deepcopy(v) for k, v in body.items() if k not in ("status", "metadata")
    }
    out["apiVersion"], out["kind"] = api_version, kind
    out["metadata"] = {k: copy.deepcopy(meta[k]) for k in KEPT_METADATA if k in meta}
    return out


def _register(indexed: Indexed) -> None:
    def index(*, body: kopf.Body, namespace: str | None, name: str | None, **_: Any) -> Any:
        return {
            (namespace, name): Entry(
                slim(body, indexed.api_version, indexed.kind), time.monotonic()
            )
        }

    def listed(*, type: str | None, **_: Any) -> None:
        if type is None:  # kopf's convention for an object of a (re-)list
            relisted(indexed.id, time.monotonic())

    w = indexed.watch
    selected = {labels.MANAGED_BY: "ferryman"}
    kopf.index(w.group, w.version, w.plural, id=indexed.id, labels=selected)(index)
    kopf.on.event(w.group, w.version, w.plural, id=f"{indexed.id}_listed", labels=selected)(listed)


def relisted(index_id: str, now: float) -> None:
    """Note that an object of index ``index_id``'s resource came from a list (startup, or
    a re-list after "410 Gone") at monotonic time ``now``: the first such object after
    ``LIST_GAP`` seconds without one begins a list, ``LIST_SLACK`` seconds before
    ``now`` (the object was indexed just before its event handler ran)."""
    last = _LAST_LISTED.get(index_id)
    if last is None or now - last > LIST_GAP:
        LISTED[index_id] = now - LIST_SLACK
    _LAST_LISTED[index_id] = now


for _indexed in INDEXES:
    _register(_indexed)


def label_selectors(settings: kopf.OperatorSettings) -> None:
    """Watch the indexed resources with the server-side selector ``SELECTOR`` (but the
    routes of routers that can share one: module docstring)."""
    shared = [watch_of(r) for r in registered() if hasattr(r, "shape")]
    for indexed in INDEXES:
        w = indexed.watch
        if w in shared:
            continue
        settings.watching.label_selectors[w.group, w.version, w.plural] = SELECTOR


def lookup(
    indexes: dict[str, Any],
    namespace: str,
    names: Iterable[str],
    ledger: Ledger | None = None,
    now: float | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """The trusted (``trusted`` at ``now``, default: the monotonic clock) indexed objects
    named ``names`` in ``namespace``, by (kind, name), from the handler's index kwargs
    ``indexes``. An object left out is read by whoever needs it."""
    at = time.monotonic() if now is None else now
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for indexed in INDEXES:
        index = indexes.get(indexed.id)
        if index is None:
            continue
        for name in names:
            for entry in index.get((namespace, name), []):
                if trusted(entry, ledger, at, LISTED.get(indexed.id)):
                    out[(indexed.kind, name)] = entry.obj
    return out
