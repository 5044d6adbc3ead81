"""The one place that knows every router: ``router_for(spec)`` picks the router a
Rollout's ``spec.trafficRouting`` selects, and ``watched()`` lists the API resources of
their route objects (the handlers watch them). Handlers, plan and CLI never ask which
router a spec names; they read the router's declared ``capabilities``.

Adding a router: a new module in ``ferryman.routing`` with a class that implements
``RouterType`` (``for_spec``, ``name``, ``capabilities``, its route object's
``api_version``/``kind``/``plural``) and ``Router`` (``build``, ``read``), plus its
``register`` line below (and its field in ``api.rollout_traffic.TrafficRouting``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.api.rollout import RolloutSpec
from ferryman.routing.base import Router, RouterType
from ferryman.routing.gatewayapi import GatewayAPIRouter
from ferryman.routing.istio import IstioRouter
from ferryman.routing.service import ServiceRouter

_ROUTERS: list[RouterType] = []


class NoRouter(LookupError):
    """No registered router is selected by the spec's trafficRouting (the CRD requires
    exactly one, so only an object the CRD never validated gets here)."""


@dataclass(frozen=True)
class Watch:
    """An API resource to watch, as kopf names it (``group`` "" is the core group)."""

    group: str
    version: str
    plural: str


def register(router: RouterType) -> RouterType:
    """Add ``router`` to the registry (after the others: the first router a spec selects
    wins; one of the same ``name`` is replaced in place). Returns it, so it can decorate
    the class."""
    for i, known in enumerate(_ROUTERS):
        if known.name == router.name:
            _ROUTERS[i] = router
            return router
    _ROUTERS.append(router)
    return router


def registered() -> tuple[RouterType, ...]:
    """Every registered router class, in the order ``router_for`` asks them."""
    return tuple(_ROUTERS)


def router_for(spec: RolloutSpec) -> Router:
    """The router for a Rollout with ``spec``. Raises ``NoRouter`` when no registered
    router is selected by ``spec.trafficRouting``."""
    for router_type in _ROUTERS:
        router = router_type.for_spec(spec)
        if router is not None:
            return router
    known = ", ".join(r.name for r in _ROUTERS)
    raise NoRouter(f"spec.trafficRouting selects no known router (one of: {known})")


def watch_of(router: RouterType | Router) -> Watch:
    """The API resource of ``router``'s route objects."""
    group, _, version = router.api_version.rpartition("/")
    return Watch(group=group, version=version, plural=router.plural)


def watched() -> list[Watch]:
    """The API resources of every registered router's route objects, each once."""
    found: list[Watch] = []
    for router in _ROUTERS:
        watch = watch_of(router)
        if watch not in found:
            found.append(watch)
    return found


register(GatewayAPIRouter)
register(IstioRouter)
register(ServiceRouter)
