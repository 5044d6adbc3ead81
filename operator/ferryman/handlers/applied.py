"""The executor's writes of one object, with the ownership check and without the writes
that would change nothing.

Each reconcile asks for every object the Rollout serves with (per served version a
Service, a PodDisruptionBudget and a Deployment; the route; the Services named after the
Rollout). Applying them all each time cost a GET and a server-side apply per object
(issue 12). ``apply_owned`` leaves the apply out when the object as observed (from kopf's
index, or as the caller just read it) already carries it:
1. every field of the desired object is there with the same value (``carries``: dict
   keys may be more, lists have the same length and carry element by element; the
   fields an apply replaces whole, ``ATOMIC`` by kind, exactly: ``carries_object``), so
   a field edited, added to an atomic field or removed by hand is written again;
2. and its ``ferryman.dev/applied`` annotation is the hash of the desired object
   (``stamp``), so a field ferryman stopped setting, which an apply would remove, still
   makes the write happen (the annotation alone never decides: see 1).
3. values the API server normalises are compared as it normalises them: resource
   quantities (``resources.limits``/``requests``, ``sizeLimit``: ``cpu: 1`` comes back as
   "1", 0.5 as "500m") by their value (``kube.quantity``).
The ownership check (an object may be someone else's: then it is left untouched and the
problem reported, as DESIGN.md §2 asks) and the comparison that decides a write run on
the object as it is, never on an index entry alone, which may lag a replacement by a
foreign object: an object is written (or deleted) either after it was read (GET) just
before, or on the condition that it is still exactly an index entry that is this
Rollout's own (its ``metadata.resourceVersion`` in the apply, uid and resourceVersion
as a delete's preconditions: the API server refuses the request, HTTP 409, if the object
changed in any way since, and then it is read; issue 12 removed the GET before most
writes this way). Only a skip may be decided on the observed entry, and only when the
caller allows it (``fresh`` False; ``handlers.executor`` says when). Reads, writes and
deletes are noted in the Ledger (``handlers.observed``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ferryman.api.common import clip
from ferryman.api.rollout import Rollout
from ferryman.handlers import terminating
from ferryman.handlers.ledger import Ledger, note
from ferryman.kube.client import ApplyRejected, Conflict
from ferryman.kube.quantity import same_quantity
from ferryman.plan import labels

if TYPE_CHECKING:
    from ferryman.handlers.executor import Writer

log = logging.getLogger(__name__)

APPLIED = f"{labels.PREFIX}/applied"  # annotation: the hash of the object last applied

Observed = Mapping[tuple[str, str], dict[str, Any]]  # (kind, name) -> object as observed
QUANTITIES = ("limits", "requests")  # dicts whose values are all quantities
QUANTITY = ("sizeLimit",)  # a quantity itself
# Fields a server-side apply replaces whole, by kind: a key or element added by hand is
# removed by an apply, so a skip must find them exactly as desired. The schema's rule:
# Kubernetes' atomic maps and structs (Service ``spec.selector`` is ``mapType=atomic``;
# a LabelSelector, PDB's and Deployment's ``spec.selector``, is ``structType=atomic``)
# and CRD lists with ``x-kubernetes-list-type: atomic`` or none (Gateway API HTTPRoute
# ``spec.rules``, whose rules, matches, filters and backendRefs are atomic; Istio's
# VirtualService ``spec.http`` has no list type). Maps that other managers legitimately
# add keys to (metadata labels and annotations) and lists merged by key (containers,
# ports, env) keep the subset comparison.
ATOMIC: dict[str, tuple[tuple[str, ...], ...]] = {
    "Service": (("spec", "selector"),),
    "PodDisruptionBudget": (("spec", "selector"),),
    "Deployment": (("spec", "selector"),),
    "HTTPRoute": (("spec", "rules"),),
    "GRPCRoute": (("spec", "rules"),),
    "VirtualService": (("spec", "http"),),
}
# Keys the API server fills in, with their schema default, inside those atomic fields
# where ferryman leaves them out (Gateway API v1 HTTPRoute: a rule's ``matches``, a
# backendRef's ``group``, ``kind`` and ``weight``): held at the default, not a hand edit.
DEFAULTED: dict[str, Any] = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
    "group": "",
    "kind": "Service",
    "weight": 1,
}


class ApplyFailure(str):
    """A problem that is a write the API server refused (not a foreign object)."""


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Set ``obj``'s APPLIED annotation to the sha256 (first 16 hex digits) of ``obj``
    without that annotation, as sorted JSON; returns ``obj``."""
    meta = obj.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(APPLIED, None)
    meta["annotations"] = annotations
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    annotations[APPLIED] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return obj


def carries(observed: Any, desired: Any, *, quantity: bool = False, exact: bool = False) -> bool:
    """Whether ``observed`` holds every field of ``desired`` with the same value: dicts
    may have more keys (none when ``exact``, but for ``DEFAULTED`` keys holding their
    default), lists must have the same length and carry element by element, scalars
    must be equal and of the same JSON type, except quantities (the values of
    ``QUANTITIES`` dicts and ``QUANTITY`` fields, or all scalars when ``quantity``),
    equal by value (``same_quantity``)."""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return False
        if exact and any(
            k not in desired and (k not in DEFAULTED or observed[k] != DEFAULTED[k])
            for k in observed
        ):
            return False
        return all(
            k in observed
            and carries(
                observed[k],
                v,
                quantity=quantity or k in QUANTITY or (k in QUANTITIES and isinstance(v, dict)),
                exact=exact,
            )
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(carries(o, d, exact=exact) for o, d in zip(observed, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(observed, bool):
        return observed is desired
    if quantity:
        return same_quantity(observed, desired)
    return type(observed) is type(desired) and bool(observed == desired)


def carries_object(observed: dict[str, Any], desired: dict[str, Any]) -> bool:
    """``carries`` for a whole object of ``desired``'s kind, its ``ATOMIC`` fields
    exactly (``carries(exact=True)``)."""
    if not carries(observed, desired):
        return False
    for path in ATOMIC.get(desired.get("kind", ""), ()):
        want: Any = desired
        have: Any = observed
        for key in path:
            want = want.get(key) if isinstance(want, dict) else None
            have = have.get(key) if isinstance(have, dict) else None
        if want is not None and not carries(have, want, exact=True):
            return False
    return True


def _refused(rollout: Rollout, obj: dict[str, Any], e: ApplyRejected, problems: list[str]) -> None:
    # A terminating namespace's refusal is expected (``handlers.namespaces``).
    ns = obj["metadata"].get("namespace")
    level = logging.INFO if terminating.noted(e.reason, ns, e.status) else logging.WARNING
    log.log(level, "%s/%s: %s", rollout.metadata.namespace, rollout.metadata.name, e)
    problems.append(
        ApplyFailure(
            f"the API server refused {e.kind} {e.name} (HTTP {e.status}): " + clip(e.reason, 512)
        )
    )


CHANGED = object()  # a conditioned write found the object changed: read it


async def _conditioned(
    kube: Writer, rollout: Rollout, obj: dict[str, Any], version: str, problems: list[str]
) -> Any:
    """Apply ``obj`` on the condition that the object is still at resourceVersion
    ``version``; the answer, None when refused (added to ``problems``), ``CHANGED``
    when it is no longer at that version (HTTP 409) or not there (HTTP 404)."""
    meta = {**obj["metadata"], "resourceVersion": version}
    try:
        return await kube.apply({**obj, "metadata": meta})
    except Conflict:
        return CHANGED
    except ApplyRejected as e:
        if e.status == 404:
            return CHANGED
        _refused(rollout, obj, e, problems)
        return None


async def apply_owned(
    kube: Writer,
    rollout: Rollout,
    obj: dict[str, Any],
    problems: list[str],
    *,
    existing: dict[str, Any] | None = None,
    read: bool = False,
    observed: Observed | None = None,
    ledger: Ledger | None = None,
    fresh: bool = False,
    indexed: Observed | None = None,
) -> dict[str, Any] | None:
    """Apply ``obj`` (stamped, see the module docstring) if no object of that name exists
    or it is this Rollout's own; else leave it untouched, add the problem and return None.
    ``existing``: the object as just read (GET) when ``read`` (None: absent); ``observed``:
    the Rollout's trusted index entries (``handlers.observed.lookup``), whose entry for
    ``obj`` may decide a skip unless ``fresh``; ``indexed``: trusted entries that may
    only condition a write (default ``observed``). Unless ``read``, a write is either
    conditioned on the resourceVersion of an entry that is this Rollout's own and does
    not carry ``obj`` (the API server applies it only to that very object, so ownership
    and the need to write are decided on the object as it is; HTTP 409 or 404: read
    it, below), or preceded by a read. ``ledger``: noted each read and write. Returns the
    object as applied, or as observed or read when it already carried ``obj`` (no
    write); a refused apply is added to ``problems`` as an ``ApplyFailure`` (None)."""
    meta = obj["metadata"]
    kind, ns, name = obj["kind"], meta["namespace"], meta["name"]
    stamp(obj)
    found = observed.get((kind, name)) if observed is not None and not fresh else None
    if (
        not read
        and found is not None
        and labels.is_owned_by(found, rollout)
        and carries_object(found, obj)
    ):
        return found
    base = (indexed if indexed is not None else observed or {}).get((kind, name))
    version = ((base or {}).get("metadata") or {}).get("resourceVersion")
    if (
        not read
        and base is not None
        and version
        and labels.is_owned_by(base, rollout)
        and not carries_object(base, obj)
    ):
        answer = await _conditioned(kube, rollout, obj, str(version), problems)
        if answer is not CHANGED:
            if answer is not None:
                note(ledger, kind, ns, name, answer)
            return cast(dict[str, Any] | None, answer)
    if not read:
        existing = await kube.get(obj["apiVersion"], kind, ns, name)
        note(ledger, kind, ns, name, existing)
    if existing is not None and not labels.is_owned_by(existing, rollout):
        problems.append(f"{kind} {name} exists and is not owned by this Rollout; left untouched")
        return None
    if existing is not None and carries_object(existing, obj):
        return existing
    try:
        answer = await kube.apply(obj)
    except ApplyRejected as e:
        _refused(rollout, obj, e, problems)
        return None
    note(ledger, kind, ns, name, answer)
    return answer


async def delete_owned(
    kube: Writer,
    rollout: Rollout,
    api_version: str,
    kind: str,
    name: str,
    problems: list[str],
    ledger: Ledger | None = None,
    indexed: Observed | None = None,
) -> None:
    """Delete ``kind`` ``name`` in the Rollout's namespace if it exists and is this
    Rollout's own; someone else's is left untouched and reported in ``problems``. With a
    trusted entry of it in ``indexed`` that is this Rollout's own, the delete is
    conditioned on that entry's uid and resourceVersion (the API server deletes only that
    very object); otherwise, or when it changed since (HTTP 409), it is read just before
    (never decided on an index entry alone)."""
    ns = rollout.metadata.namespace
    entry = (indexed or {}).get((kind, name))
    meta = (entry or {}).get("metadata") or {}
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    if entry is not None and uid and version and labels.is_owned_by(entry, rollout):
        try:
            precondition = {"uid": str(uid), "resourceVersion": str(version)}
            await kube.delete(api_version, kind, ns, name, preconditions=precondition)
        except Conflict:
            pass  # changed since: read it, below
        else:
            note(ledger, kind, ns, name, None)
            return
    existing = await kube.get(api_version, kind, ns, name)
    if existing is None:
        note(ledger, kind, ns, name, None)
        return
    if not labels.is_owned_by(existing, rollout):
        problems.append(f"{kind} {name} exists and is not owned by this Rollout; left untouched")
        return
    await kube.delete(api_version, kind, ns, name)
    note(ledger, kind, ns, name, None)
