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

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ferryman.api.common import ConditionStatus
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.handlers.applied import apply_owned, delete_owned
from ferryman.handlers.ledger import Ledger, known_absent, note
from ferryman.plan import labels, serving
from ferryman.plan.conditions import set_condition
from ferryman.plan.route import Route
from ferryman.routing import Router, companions_of, shared_of

if TYPE_CHECKING:
    from ferryman.handlers.executor import Snapshot, Writer

Obj = dict[str, Any]
CONDITION = "GRPCRoute"


def grpc_ports(versions: Iterable[ModelVersion]) -> set[int | None]:
    """The gRPC Service port of each of ``versions`` (None: it has none)."""
    return {serving.grpc_port(mv.spec.serving) for mv in versions}


def served(
    status: Any, by_version: Mapping[str, ModelVersion], *also: str | None
) -> list[ModelVersion]:
    """The ModelVersions the routes carry: ``status``'s stable and candidate (and
    ``also``), not every version ever registered: a retired one without a gRPC port says
    nothing about the routes (review8 R4)."""
    wanted = (status.stable_version, status.candidate_version, *also)
    return [by_version[v] for v in dict.fromkeys(wanted) if v and v in by_version]


def names(router: Router, rollout: str) -> list[str]:
    """The names of every companion route the Rollout ``rollout`` may have (for the
    index lookup)."""
    companion = companions_of(router)
    if companion is None:
        return []
    return [ref.name for ref in companion.companion_refs(rollout, every=True)]


async def blocked(
    kube: Writer,
    ledger: Ledger | None,
    router: Router,
    rollout: Rollout,
    known: Any,
    now: float,
    versions: Iterable[ModelVersion] = (),
) -> str | None:
    """Why nothing may advance: a companion route the spec asks for exists and is not
    this Rollout's (None: each is ours or absent). One in the index (``known``) is ours;
    else it is read, unless this process's last read found it absent."""
    companion = companions_of(router)
    if companion is None:
        return None
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    # A GRPCRoute is written when the stable has a gRPC port: ask for its names when any
    # version the routes may carry has one.
    target = rollout.spec.target.version  # the decision may start it
    mine = served(rollout.status, {mv.spec.version: mv for mv in versions}, target)
    port = next((p for p in grpc_ports(mine) if p is not None), None)
    for ref in companion.companion_refs(name, grpc_port=port):
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
        grpc_port=_grpc(seen.by_version, route)[0],
        grpc_route=_grpc(seen.by_version, route)[1],
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


def _grpc(by_version: Mapping[str, ModelVersion], route: Route) -> tuple[int | None, Route]:
    """The gRPC port of ``route`` and the route its gRPC traffic takes: the stable's
    port; all of it on stable when the candidate serves gRPC on another port or none
    (``PortMismatch``), never to a port the candidate does not serve."""
    stable = by_version.get(route.stable)
    port = serving.grpc_port(stable.spec.serving) if stable is not None else None
    candidate = by_version.get(route.candidate or "")
    if candidate is not None and serving.grpc_port(candidate.spec.serving) != port:
        return port, Route(stable=route.stable)
    return port, route


def condition(
    rollout: Rollout, status: Any, router: Router, by_version: Mapping[str, ModelVersion],
    now: datetime,
) -> None:  # fmt: skip
    """Set the ``GRPCRoute`` condition (module docstring) while a served version has a
    gRPC port (or the condition was set before: it then says there is none)."""
    ports = grpc_ports(served(status, by_version))
    old = any(c.type == CONDITION for c in status.conditions or [])
    if ports == {None} or not ports:
        if not old:
            return
        state, reason, message = True, "NoGRPCPort", "no served version has a gRPC port"
    else:
        companion = companions_of(router)
        can = companion is not None and companion.grpc and shared_of(router) is None
        numbers = sorted(str(p) for p in ports if p is not None)
        if not can:
            state, reason = False, "NotSupported"
            message = (
                f"the {router.name} router does not route the gRPC port {', '.join(numbers)}: "
                "gRPC clients reach it through the live Service, on the stable version only"
            )
        elif len(ports) > 1:
            state, reason = False, "PortMismatch"
            message = (
                "the served versions disagree on the gRPC port (appProtocol grpc: "
                f"{', '.join(numbers)}, or none): gRPC traffic stays on the stable version"
            )
        else:
            state, reason = True, "Routed"
            message = f"GRPCRoute(s) split the gRPC port {numbers[0]} like the HTTP route"
    status.conditions = set_condition(
        status.conditions,
        type=CONDITION,
        status=ConditionStatus.TRUE if state else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        generation=rollout.metadata.generation,
        now=now,
    )
