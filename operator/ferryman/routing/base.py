"""The interface every router implements (``Router``, an instance for one Rollout) and
the one its class implements to be registered (``RouterType``: which spec selects it,
what it can do, which API resource its route objects are). Its own module so the router
modules and the registry import it without importing each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ferryman.api.rollout import RolloutSpec
from ferryman.plan.route import Route, RouterCapabilities
from ferryman.routing.shared import RuleShape, Shared

Obj = dict[str, Any]


class Router(Protocol):
    """A router for one Rollout: builds its route object and reads one back."""

    # The trafficRouting field that selects the router, as the API spells it (the CLI shows it).
    name: str
    capabilities: RouterCapabilities
    # The route object's API resource: apiVersion ("group/version", or "v1" for the core
    # group), kind and plural (the handler watches that resource and wakes the owner).
    api_version: str
    kind: str
    plural: str

    def build(
        self,
        *,
        name: str,
        namespace: str,
        route: Route,
        services: Mapping[str, str],
        port: int,
        metadata: Obj,
    ) -> Obj:
        """The routing object named ``name`` (the Rollout's name) sending ``route``'s
        weights to the per-version Services (``services`` maps version -> Service name)."""
        ...

    def read(self, obj: Obj, versions: Mapping[str, str]) -> Route | None:
        """The weights really in ``obj`` (a shared route: in its first named rule;
        ``versions`` maps Service name -> version); None when ``obj`` routes to something
        that is not one of the versions."""
        ...


class SharingRouter(Router, Protocol):
    """A router that can also manage named rules of a route someone else owns
    (``routing.shared``); ``shared_of`` finds out whether a router does for its spec."""

    # The route the Rollout names and the names of its rules ferryman manages; None: the
    # router creates the route object and owns it.
    shared: Shared | None
    shape: RuleShape  # how its API spells a rule

    def patch(self, obj: Obj, route: Route, services: Mapping[str, str], port: int) -> list[Obj]:
        """The JSON patch operations that make the named rules of ``obj`` (the shared
        route as read) carry ``route``, empty when they do (``routing.shared.patch_ops``).
        Raises ``routing.shared.SharedRouteProblem``."""
        ...


@dataclass(frozen=True)
class RouteRef:
    """A route object a router may write besides its main one (``CompanionRouter``)."""

    api_version: str
    kind: str
    name: str


class CompanionRouter(Router, Protocol):
    # Whether it routes a gRPC serving port (issue 15 §3); one that cannot says so in the
    # Rollout's GRPCRoute condition (``handlers.companions``), never silently.
    grpc: bool
    # The API resources of companion objects that are not a router's main kind (the
    # handlers index and watch them like route objects): (apiVersion, kind, plural).
    companion_kinds: tuple[tuple[str, str, str], ...]

    """A router that writes more than one route object for a Rollout (issue 15 §2/§3):
    besides ``build``'s (named after the Rollout, the one status reads weights from),
    ``companions`` (a GAMMA HTTPRoute for east-west traffic, an Istio VirtualService for
    the ``mesh`` gateway). All carry the same ``Route``; the executor writes them in the
    same step as the main one (``handlers.companions``)."""

    def companions(
        self,
        *,
        name: str,
        namespace: str,
        route: Route,
        services: Mapping[str, str],
        port: int,
        metadata: Obj,
        grpc_port: int | None = None,
        grpc_route: Route | None = None,
    ) -> list[Obj]:
        """The other route objects of the Rollout named ``name`` (arguments as ``build``;
        ``grpc_port``: the versions' gRPC Service port, None without one; ``grpc_route``:
        the traffic of that port, default ``route``); empty when its spec asks for
        none."""
        ...

    def companion_refs(
        self, name: str, *, every: bool = False, grpc_port: int | None = None
    ) -> tuple[RouteRef, ...]:
        """The route objects ``companions`` writes for the Rollout ``name``; with
        ``every``, each one it may write, asked for now or not (one the spec no longer
        asks for is deleted)."""
        ...


def companions_of(router: Router) -> CompanionRouter | None:
    """``router`` when it can write companion routes, else None."""
    if not callable(getattr(router, "companions", None)):
        return None
    return cast(CompanionRouter, router)


def shared_of(router: Router) -> SharingRouter | None:
    """``router`` when its spec names a shared route (``SharingRouter.shared``), else None
    (a router that owns its route object, or one that cannot share)."""
    if getattr(router, "shared", None) is None:
        return None
    return cast(SharingRouter, router)


def route_name(router: Router, rollout: str) -> str:
    """The name of the route object of the Rollout named ``rollout``: the shared route's,
    else the Rollout's own (the routers name their objects after it)."""
    shared = shared_of(router)
    return shared.shared.name if shared is not None and shared.shared is not None else rollout


class RouterType(Protocol):
    """A router class as the registry sees it: the class attributes every instance has,
    and ``for_spec``."""

    name: str
    capabilities: RouterCapabilities
    api_version: str
    kind: str
    plural: str

    @classmethod
    def for_spec(cls, spec: RolloutSpec) -> Router | None:
        """The router for a Rollout with ``spec``, or None when ``spec.trafficRouting``
        does not select this router."""
        ...
