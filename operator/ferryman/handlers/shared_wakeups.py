"""Wake-ups for routes someone else owns: a Rollout that names a shared route
(``routing.shared``, ``handlers.shared_routes``) is woken by every change of that route,
as a Rollout is by a change of its own route (``handlers.rollouts``), so a hand edit of
its named rules is written back, or a removed rule reported, at once rather than at the
next analysis round. kopf registrations only; its own module so the executor's side
(``handlers.shared_routes``) stays free of kopf."""

from __future__ import annotations

from typing import Any

import kopf

from ferryman.api.common import GROUP, VERSION
from ferryman.api.rollout import PLURAL, RolloutSpec
from ferryman.handlers import wakeups
from ferryman.plan import labels
from ferryman.routing import NoRouter, registered, router_for, shared_of, watch_of


@kopf.index(GROUP, VERSION, PLURAL)
def rollouts_by_shared_route(
    *, body: kopf.Body, name: str | None, namespace: str | None, **_: Any
) -> Any:
    """The Rollouts naming each shared route: {(namespace, kind, route name): Rollout}."""
    try:
        router = router_for(RolloutSpec.model_validate(body.get("spec") or {}))
    except (ValueError, NoRouter):
        return {}
    shared = shared_of(router)
    if shared is None or shared.shared is None:
        return {}
    return {(namespace, router.kind, shared.shared.name): name}


async def shared_route_changed(
    *, namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A route that is not ferryman's changed: wake every Rollout that names it."""
    index = kwargs["rollouts_by_shared_route"]
    for rollout in index.get((namespace, body.get("kind"), name), []):
        wakeups.wake(memo, namespace, rollout)


# Routes without ferryman's label (those with it wake their owner: ``handlers.rollouts``),
# of every router that can share one.
for _router in registered():
    if hasattr(_router, "shape"):
        _watch = watch_of(_router)
        kopf.on.event(
            _watch.group,
            _watch.version,
            _watch.plural,
            labels={labels.MANAGED_BY: kopf.ABSENT},
        )(shared_route_changed)
