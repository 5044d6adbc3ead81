"""Stickiness proven on what ferryman writes (issue 16 §3): the route objects the routers
build for an abTest, evaluated with RE2 (``harness.route_eval``, Envoy's engine) over
100,000 generated user ids. Each id always reaches one variant (the same on every
evaluation, with its cookie among others in any order, in either letter case, and on
both routers), and the candidate's share of users is within the documented bound of the
percent asked: ``k / 256`` within 1/512 of it (``plan.experiment``), then sampling noise,
at most 4.5 standard deviations of a binomial share (a fixed seed makes it exact)."""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import pytest

from cases.api_cases import AB_TEST
from ferryman.plan import experiment
from ferryman.plan.route import Route
from ferryman.routing import router_for
from harness import route_eval
from unit.test_machine_strategies import ISTIO, spec_with

USERS = 100_000
SERVICES = {"1.0.0": "fraud-1-0-0", "1.1.0": "fraud-1-1-0"}
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}}
OTHER_COOKIES = ["theme=dark", "lang=en-GB", "xuid=ffff", "_ga=GA1.2.3f"]


def written(routing: dict[str, Any], users: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The route object ferryman's router builds for an abTest with ``users``, and the
    share it is meant to give the candidate."""
    spec = spec_with({"abTest": {**AB_TEST["abTest"], "users": users}}, routing)
    assert spec.strategy.ab_test is not None
    match = experiment.user_match(spec.strategy.ab_test.users)
    assert match.share is not None
    route = Route(stable="1.0.0", candidate="1.1.0", users=match)
    obj = router_for(spec).build(
        name="fraud", namespace="ns", route=route, services=SERVICES, port=80, metadata={}
    )
    return obj, match.share


def ids(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(USERS)]


def carry(where: str, name: str, uid: str, rng: random.Random) -> dict[str, str]:
    """Request headers carrying ``uid`` in header ``name`` or in cookie ``name`` among
    other cookies, in a random order."""
    if where == "header":
        return {name: uid}
    cookies = [f"{name}={uid}", *rng.sample(OTHER_COOKIES, rng.randint(0, 3))]
    rng.shuffle(cookies)
    return {"Cookie": "; ".join(cookies)}


@pytest.mark.parametrize(("percent", "where"), [(10, "header"), (25, "cookie")])
def test_every_user_sticks_to_one_variant_and_the_share_is_within_the_bound(
    percent: int, where: str
) -> None:
    users = {"percentOfUsers": {"percent": percent, "userId": {where: "uid"}}}
    (gateway, share), (istio, _) = written(GATEWAY, users), written(ISTIO, users)
    assert abs(share - percent / 100) <= 1 / 512
    rng = random.Random(percent)
    candidate = 0
    for uid in ids(seed=percent * 2 + (where == "cookie")):
        # Two requests of the same user: through the HTTPRoute, and (its id in capitals,
        # its cookies in another order) through the VirtualService.
        first = route_eval.backend(gateway, carry(where, "uid", uid, rng))
        second = route_eval.backend(istio, carry(where, "uid", uid.upper(), rng))
        assert first == second, uid  # one variant per user
        candidate += first == "fraud-1-1-0"
    measured = candidate / USERS
    sigma = math.sqrt(share * (1 - share) / USERS)
    print(
        f"\n{percent}% of users by {where}: written share {share:.4f} (k={round(share * 256)}"
        f"/256), measured {measured:.4f} over {USERS:,} ids ({(measured - share) / sigma:+.2f} sd)"
    )
    assert abs(measured - share) <= 4.5 * sigma


@pytest.mark.parametrize("routing", [GATEWAY, ISTIO], ids=["gatewayAPI", "istio"])
def test_requests_without_the_id_go_to_stable(routing: dict[str, Any]) -> None:
    for where in ("header", "cookie"):
        obj, _ = written(routing, {"percentOfUsers": {"percent": 99, "userId": {where: "uid"}}})
        assert route_eval.backend(obj, {}) == "fraud-1-0-0"
        assert route_eval.backend(obj, {"Cookie": "theme=dark; xuid=00"}) == "fraud-1-0-0"
        assert route_eval.backend(obj, {"x-other": "00"}) == "fraud-1-0-0"
        # an id that does not end in two hex digits
        assert route_eval.backend(obj, carry(where, "uid", "user-zz", random.Random(0))) == (
            "fraud-1-0-0"
        )
