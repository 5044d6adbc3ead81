"""Traffic routers behind one small interface and one registry.

A router turns the state machine's ``Route`` (weights by version, mirror percent) into
the object its data plane reads, and reads what is really there back into a ``Route``.
Each declares what it can do (``plan.route.RouterCapabilities``); ``router_for(spec)``
(``routing.registry``) picks the one a Rollout's ``spec.trafficRouting`` selects. Routers
are pure: the handler checks ownership, applies the object with server-side apply (the
full desired state every time, never appending) and passes back what the API server
returned. A route someone else owns, named by the Rollout (``routing.shared``), is never
applied: the routers that can share (``SharingRouter``) give the JSON patch of the named
rules instead, and the handler writes it conditioned on the resourceVersion it read.
"""

from __future__ import annotations

from ferryman.routing.base import (
    CompanionRouter,
    Obj,
    Router,
    RouteRef,
    RouterType,
    SharingRouter,
    companions_of,
    route_name,
    shared_of,
)
from ferryman.routing.registry import (
    NoRouter,
    Watch,
    register,
    registered,
    router_for,
    watch_of,
    watched,
)

__all__ = [
    "CompanionRouter",
    "NoRouter",
    "Obj",
    "RouteRef",
    "Router",
    "RouterType",
    "SharingRouter",
    "Watch",
    "companions_of",
    "register",
    "registered",
    "route_name",
    "router_for",
    "shared_of",
    "watch_of",
    "watched",
]
