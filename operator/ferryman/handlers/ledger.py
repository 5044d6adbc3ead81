"""When an entry of the indexes of ferryman's objects (``handlers.observed``) may be
trusted, and this process's record of what it wrote and read (the ``Ledger``).

An index lags the cluster: a foreign edit or a deletion is in it only once its watch
event is, and kopf (1.45) removes an entry only on a DELETED event; after a "410 Gone" it
lists again and re-indexes what the list holds, but never discards an entry the list no
longer has (kopf/_cogs/clients/watching.py continuous_watch; the indexers are not told
which objects came from a list, the event handlers are: 3). So an entry is used
(``lookup``) only while it is trusted (``trusted``):
1. it is not older than what this process itself wrote or read of the object since (the
   ``Ledger``: a lower generation than our last write, or another resourceVersion where
   there is no generation; never after our delete, until we write the object again);
2. its watch event, or our last read of that same resourceVersion, is at most
   ``MAX_AGE`` seconds old. This bounds a ghost only for a Rollout that reconciles: an
   entry kept after its object vanished during a re-list is read again (and the object
   recreated) at the first reconcile after ``MAX_AGE``, at the cost of one GET per object
   per ``MAX_AGE`` while the Rollout reconciles. Idle Rollouts cost nothing: a Healthy
   Rollout reconciles only when an event wakes it (its own change, a ModelVersion's, or
   any watch event of its objects);
3. it was not left out of the latest list of its resource: kopf hands every listed
   object to the event handlers with ``type`` None, after indexing it
   (``handlers.observed.relisted`` notes when a list began, per resource, and those
   events wake each listed object's Rollout), so an entry older than the list's start
   that nothing read since is a ghost suspect and is read again at that Rollout's
   reconcile, which then acts on its absence as after a DELETED event. A Rollout none
   of whose objects was listed is not woken by the list: its ghosts are read at its
   next reconcile.
A GET that verifies an entry refreshes it (the Ledger remembers the read), so a quiet
object is not read on every reconcile. Purging the index on a re-list would be exact but
needs kopf internals (a list's end is not reported: ``observed.LIST_GAP`` guesses it);
a GET whenever a skip leaves the Rollout depending on the object would be every skip, as
before the indexes.
What a trusted entry may decide, and what is read fresh whatever the index says, is
``handlers.children``'s rule: entries decide skips only where a stale one is harmless
(not for the route nor for the versions a decision that moves weight or removes capacity
relies on); every write and every delete is preceded by a GET or conditioned on the
object being exactly an owned entry (its resourceVersion; ``handlers.applied``), so
ownership is never decided on an entry alone. The Ledger keeps one small record per
object this process wrote or read (deleted objects included) for ``MAX_AGE`` seconds:
an older record never changes ``trusted``'s or ``known_absent``'s answer (an entry it
would refuse is itself older than ``MAX_AGE``: its watch event came before our write),
so records are dropped once they are that old (``prune``, at most once per ``MAX_AGE``),
and a process that has touched a million objects over its life holds only those of the
last minute or two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

MAX_AGE = 60.0  # seconds an entry is trusted after its watch event or our last read


@dataclass(frozen=True)
class Entry:
    """One index entry: the object (``slim``) and the ``time.monotonic()`` at which its
    watch event was handled (seconds)."""

    obj: dict[str, Any]
    at: float


@dataclass(frozen=True)
class Known:
    """What this process last wrote or read of one object: the resourceVersion and
    generation the API server answered with (``deleted``: it answered that the object is
    gone, or deleted it), at ``at`` (``time.monotonic()``, seconds)."""

    resource_version: str | None
    generation: int | None
    at: float
    deleted: bool = False


Key = tuple[str, str, str]  # (namespace, kind, name)


class Ledger(dict[Key, Known]):
    """Records by object; ``pruned_at``: the ``time.monotonic()`` of the last ``prune``."""

    pruned_at: float = 0.0


def prune(book: Ledger | StatusLedger, now: float) -> None:
    """Drop the records of ``book`` written more than ``MAX_AGE`` seconds before ``now``
    (monotonic seconds), if the last prune was at least that long ago (so the cost, one
    pass over the records, is paid at most once per ``MAX_AGE``)."""
    if now - book.pruned_at < MAX_AGE:
        return
    book.pruned_at = now
    for key in [k for k, record in book.items() if now - record.at > MAX_AGE]:
        del book[key]


def note(ledger: Ledger | None, kind: str, namespace: str, name: str, answer: Any) -> None:
    """Record in ``ledger`` that the API server answered a write or read of ``kind``
    ``namespace/name`` with ``answer`` (the object; None: absent or deleted)."""
    if ledger is None:
        return
    meta = (answer or {}).get("metadata") or {}
    generation = meta.get("generation")
    now = time.monotonic()
    ledger[(namespace, kind, name)] = Known(
        meta.get("resourceVersion"),
        generation if isinstance(generation, int) else None,
        now,
        deleted=answer is None,
    )
    prune(ledger, now)


def trusted(entry: Entry, ledger: Ledger | None, now: float, listed: float | None = None) -> bool:
    """Whether ``entry`` may be used at monotonic time ``now`` (module docstring, 1 to
    3): not older than the Ledger's record of the object, seen or verified at most
    ``MAX_AGE`` seconds ago, and not before ``listed`` (the monotonic time the latest
    list of its resource began; None: none)."""
    meta = entry.obj.get("metadata") or {}
    rv, generation = meta.get("resourceVersion"), meta.get("generation")
    key = (str(meta.get("namespace")), str(entry.obj.get("kind")), str(meta.get("name")))
    known = ledger.get(key) if ledger else None
    at = entry.at
    if known is not None:
        if known.deleted:
            return False
        if isinstance(known.generation, int) and isinstance(generation, int):
            if generation < known.generation:
                return False
        elif rv != known.resource_version:
            return False
        if rv == known.resource_version:
            at = max(at, known.at)
    if listed is not None and at < listed:
        return False  # the latest list did not hold it, and nothing read it since
    return now - at <= MAX_AGE


# --- status writes -------------------------------------------------------------------


@dataclass(frozen=True)
class StatusWrite:
    """What this process wrote to one object's status: the resourceVersion of the object
    as observed when the first of those writes was decided (``base``), and its status
    then with each of our merge patches since applied (``status``, camelCase JSON), the
    last at ``at`` (``time.monotonic()``, seconds). A record older than ``MAX_AGE`` is
    pruned: an index still at ``base`` that long after our write is not waited for, and
    the cost is at most one status write that changes nothing."""

    base: str
    status: dict[str, Any]
    at: float = 0.0


StatusKey = tuple[str, str, str]  # (plural, namespace, name)


class StatusLedger(dict[StatusKey, StatusWrite]):
    """Status writes by object; ``pruned_at`` as for ``Ledger``."""

    pruned_at: float = 0.0


def merged(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge patch ``patch`` applied (RFC 7386: a dict merges
    key by key, None removes the key, anything else replaces); inputs are not changed."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out


def believed_status(
    ledger: StatusLedger | None, key: StatusKey, resource_version: str, status: dict[str, Any]
) -> dict[str, Any]:
    """The status of ``key`` as this process knows it: ``status``, observed at
    ``resource_version`` (an index entry), or, while the observed object is still the
    one our last status writes were decided on (the same resourceVersion: the index has
    not yet delivered them), that status with our writes merged in. An entry at any other
    resourceVersion is newer than our base (our own write, or someone else's) and is
    used as it is: a skip decided here costs at most a write one watch event later, and
    what that event brings is decided on afresh."""
    record = ledger.get(key) if ledger else None
    if record is not None and resource_version and record.base == resource_version:
        return record.status
    return status


def note_status(
    ledger: StatusLedger | None,
    key: StatusKey,
    resource_version: str,
    status: dict[str, Any],
    patch: dict[str, Any],
) -> None:
    """Record that the merge patch ``patch`` was written (accepted) to the status of
    ``key``, decided on ``status`` observed at ``resource_version`` (nothing is recorded
    without one)."""
    if ledger is None or not resource_version:
        return
    now = time.monotonic()
    ledger[key] = StatusWrite(
        resource_version,
        merged(believed_status(ledger, key, resource_version, status), patch),
        now,
    )
    prune(ledger, now)


def known_absent(ledger: Ledger | None, kind: str, namespace: str, name: str, now: float) -> bool:
    """Whether this process's own last read of ``kind`` ``namespace/name`` found it
    absent (or it deleted it) at most ``MAX_AGE`` seconds before ``now`` (monotonic). A
    decision may be made on that absence instead of reading again (a Rollout's route
    before its first version is Ready: issue 12 counted ~7 such 404s per Rollout); a
    write of the object is still preceded by a read or conditioned on an owned entry
    (``handlers.applied``), so a same-named object created since, ferryman's or not, is
    never written over unseen."""
    known = ledger.get((namespace, kind, name)) if ledger else None
    return known is not None and known.deleted and now - known.at <= MAX_AGE
