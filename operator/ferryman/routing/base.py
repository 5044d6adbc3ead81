"""The interface every router implements (``Router``, an instance for one Rollout) and
the one its class implements to be registered (``RouterType``: which spec selects it,
what it can do, which API resource its route objects are). Its own module so the router
modules and the registry import it without importing each other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ferryman.api.rollout import RolloutSpec
from ferryman.plan.route import Route, RouterCapabilities

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
        """The weights really in ``obj`` (``versions`` maps Service name -> version); None
        when ``obj`` routes to something that is not one of the versions."""
        ...


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
