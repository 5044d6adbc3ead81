"""Companion routes (issue 15 §2): the route objects a router writes besides the one named
after the Rollout (``routing.base.CompanionRouter``): the GAMMA HTTPRoute whose parent is
the live Service, Istio's VirtualService for the ``mesh`` gateway. They carry the same
weights and mirror as the main route and are written in the same step, right after it
(before any capacity goes), so a rollback returns both to stable together; a step whose
companion was not written did not happen (the executor keeps the status it was made from
and tries again). Status reads weights from the main route only, and a hand edit of a
companion is written back like one of the main route (its watch event wakes the Rollout).

Like every object ferryman writes, a companion is written only if absent or this
Rollout's own (``handlers.applied``): a same-named object of someone else's blocks the
Rollout (``blocked``: nothing advances, promotes or scales down) rather than leaving east-
west traffic where it was while gateway traffic moves. A companion the spec no longer
asks for (a Service parent removed) is deleted, when the index holds it as ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ferryman.api.rollout import Rollout
from ferryman.handlers.applied import apply_owned, delete_owned
from ferryman.handlers.ledger import Ledger, known_absent, note
from ferryman.plan import labels, serving
from ferryman.plan.route import Route
from ferryman.routing import Router, companions_of

if TYPE_CHECKING:
    from ferryman.handlers.executor import Snapshot, Writer

Obj = dict[str, Any]


def names(router: Router, rollout: str) -> list[str]:
    """The names of every companion route the Rollout ``rollout`` may have (for the
    index lookup)."""
    companion = companions_of(router)
    if companion is None:
        return []
    return [ref.name for ref in companion.companion_refs(rollout, every=True)]


async def blocked(
    kube: Writer, ledger: Ledger | None, router: Router, rollout: Rollout, known: Any, now: float
) -> str | None:
    """Why nothing may advance: a companion route the spec asks for exists and is not
    this Rollout's (None: each is ours or absent). One in the index (``known``) is ours;
    else it is read, unless this process's last read found it absent."""
    companion = companions_of(router)
    if companion is None:
        return None
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    for ref in companion.companion_refs(name):
        if (ref.kind, ref.name) in known or known_absent(ledger, ref.kind, ns, ref.name, now):
            continue
        found = await kube.get(ref.api_version, ref.kind, ns, ref.name)
        note(ledger, ref.kind, ns, ref.name, found)
        if found is not None and not labels.is_owned_by(found, rollout):
            return (
                f"{ref.kind} {ref.name} exists and is not owned by this Rollout: ferryman "
                "cannot route its east-west traffic, so nothing advances, promotes or "
                "scales down until it is removed or renamed"
            )
    return None


async def write(
    kube: Writer,
    seen: Snapshot,
    route: Route,
    services: Mapping[str, str],
    metadata: Obj,
    transition: bool,
    problems: list[str],
) -> bool:
    """Apply the companions of the decision's ``route`` (``metadata``: as the main
    route's) and delete those the spec no longer asks for. In a ``transition`` no skip is
    decided on an index entry (``handlers.children``). Returns whether every companion
    carries ``route`` now (a refused or foreign one is in ``problems``)."""
    companion = companions_of(seen.router)
    if companion is None:
        return True
    rollout = seen.rollout
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    objs = companion.companions(
        name=name,
        namespace=ns,
        route=route,
        services=services,
        port=serving.service_port(rollout),
        metadata=metadata,
    )
    ok = True
    for obj in objs:
        applied = await apply_owned(
            kube,
            rollout,
            obj,
            problems,
            observed=seen.observed,
            ledger=seen.ledger,
            fresh=transition,
            indexed=seen.indexed,
        )
        ok = ok and applied is not None
    wanted = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for ref in companion.companion_refs(name, every=True):
        if (ref.kind, ref.name) not in wanted and (ref.kind, ref.name) in seen.indexed:
            await delete_owned(
                kube, rollout, ref.api_version, ref.kind, ref.name, problems, seen.ledger,
                seen.indexed,
            )  # fmt: skip
    return ok
