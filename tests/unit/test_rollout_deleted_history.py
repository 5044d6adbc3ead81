"""A Rollout's deletion closes the serving intervals of the versions it served
(``handlers.rollouts.rollout_deleted`` through ``handlers.roles``), also of one whose
status kopf's index does not show yet as this Rollout's: the candidate a reconcile had
just started when the Rollout was deleted (its status write is in this process's ledger,
``handlers.ledger``, not yet in the index)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ferryman.api.modelversion import ModelVersion
from ferryman.handlers import rollouts
from ferryman.handlers.context import OperatorContext, install
from ferryman.handlers.ledger import note_status
from unit.machine_sim import NAME, NS, Sim, canary_spec

SINCE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).isoformat()


class Kube:
    def __init__(self) -> None:
        self.patches: dict[str, dict[str, Any]] = {}

    async def patch_status(self, plural: str, ns: str, name: str, status: Any, **_: Any) -> None:
        self.patches[name] = status


def test_the_deletion_closes_an_interval_the_index_does_not_show_yet() -> None:
    sim = Sim(canary_spec([{"setWeight": 50}]))
    body = sim.rollout().model_dump(by_alias=True, mode="json", exclude_none=True)
    body["spec"]["deletionPolicy"] = "Delete"
    stale = ModelVersion.model_validate(
        sim.model_version("1.1.0").model_dump(by_alias=True, mode="json", exclude_none=True)
        | {"status": {"phase": "Registered"}}
    )
    stale.metadata.resource_version = "5"
    kube = Kube()
    ctx = OperatorContext(kube=kube, http=None)  # type: ignore[arg-type]
    memo: dict[str, Any] = {}
    install(memo, ctx)
    # The reconcile's write, accepted, not yet delivered by the watch.
    note_status(
        ctx.status_writes,
        ("modelversions", NS, stale.metadata.name),
        "5",
        {"phase": "Registered"},
        {
            "phase": "Serving",
            "role": "candidate",
            "rollout": NAME,
            "servedFrom": SINCE,
            "servingHistory": [{"rollout": NAME, "servedFrom": SINCE, "roles": ["candidate"]}],
        },
    )
    handler: Any = rollouts.rollout_deleted  # called as kopf calls it
    asyncio.run(
        handler(
            body=body,
            memo=memo,
            retry=0,
            deployments_by_rollout={},
            modelversions_by_model={(NS, "fraud"): [stale]},
        )
    )
    patch = kube.patches[stale.metadata.name]
    assert patch["phase"] == "Retired" and patch["rollout"] is None
    (closed,) = patch["servingHistory"]
    assert closed["ended"] == "RolloutDeleted" and closed["servedUntil"]
