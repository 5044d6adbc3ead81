"""Requests a rollout does not need (issue 12): ModelVersion status patches decided
again on an index that has not yet delivered our own write (``handlers.roles`` with
``handlers.ledger.believed_status``), kopf's diff-base annotation patches that raced the
Rollout's status write (``handlers.lifecycle.NoDiffBase``), and the client's
per-request proxy lookup (``kube.client``)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes.aio import config as kube_config

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout, RolloutPhase, RolloutStatus
from ferryman.handlers import applied, children, executor, lifecycle
from ferryman.handlers.ledger import MAX_AGE, Ledger, StatusLedger, known_absent, merged, note
from ferryman.handlers.roles import update_roles
from ferryman.kube import client
from ferryman.plan import labels, machine
from ferryman.plan.decision import Observed, VersionRecord
from ferryman.routing import router_for
from unit.fake_kube import FakeKube, json_copy
from unit.machine_sim import (
    T0,
    Cluster,
    Sim,
    canary_spec,
    no_weight_on_unready,
    retarget,
    route_moves_before_capacity_goes,
)
from unit.test_executor import NS as EXEC_NS
from unit.test_executor import ROUTE, cluster, decide, paused_at_ten, rollout_of, snapshot
from unit.test_executor import mv_of as exec_mv

NS = "risk"


def rollout() -> Rollout:
    spec = canary_spec([{"setWeight": 50}, {"pause": {}}])
    return Rollout.model_validate(
        {
            "metadata": {"name": "fraud", "namespace": NS, "uid": "u1", "generation": 1},
            "spec": spec.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
    )


def mv(version: str, rv: str, status: dict[str, Any]) -> ModelVersion:
    """A ModelVersion as kopf's index holds it: at resourceVersion ``rv``."""
    return ModelVersion.model_validate(
        {
            "metadata": {"name": f"fraud-{version}", "namespace": NS, "resourceVersion": rv},
            "spec": {
                "model": "fraud",
                "version": version,
                "artifact": {"uri": "s3://m/x", "digest": "sha256:" + "0" * 64},
                "serving": {"image": "srv"},
            },
            "status": status,
        }
    )


def status(**fields: Any) -> RolloutStatus:
    return RolloutStatus.model_validate(fields)


def fake(*names: str) -> FakeKube:
    kube = FakeKube()
    for name in names:
        kube.put_status("modelversions", NS, name, "1", {})
    return kube


def roles(
    kube: FakeKube,
    mvs: list[ModelVersion],
    st: RolloutStatus,
    written: StatusLedger,
    seconds: float = 0,
) -> None:
    now = T0 + timedelta(seconds=seconds)
    asyncio.run(update_roles(kube, rollout(), st, mvs, now, written))


def test_a_status_patch_already_written_is_not_written_again_while_the_index_lags() -> None:
    kube, written = fake("fraud-1.0.0"), StatusLedger()
    stale = [mv("1.0.0", "5", {"phase": "Registered"})]
    candidate = status(candidateVersion="1.0.0", phase="Progressing")
    for second in range(3):  # three reconciles before the index delivers our write
        roles(kube, stale, candidate, written, second)
    assert kube.writes == [("status", "modelversions", "fraud-1.0.0")]
    held = kube.statuses[("modelversions", NS, "fraud-1.0.0")]["status"]
    assert held["servedFrom"] == T0.isoformat()
    # The index delivers the write: nothing more to write either.
    roles(kube, [mv("1.0.0", "6", held)], candidate, written, 4)
    assert len(kube.writes) == 1


def test_a_later_change_on_a_lagging_index_writes_only_what_changed() -> None:
    kube, written = fake("fraud-1.0.0"), StatusLedger()
    stale = [mv("1.0.0", "5", {"phase": "Registered"})]
    roles(kube, stale, status(candidateVersion="1.0.0"), written)
    roles(kube, stale, status(stableVersion="1.0.0"), written, 10)
    held = kube.statuses[("modelversions", NS, "fraud-1.0.0")]["status"]
    assert len(kube.writes) == 2
    assert held["role"] == "stable" and held["phase"] == "Serving"
    # Still the moment it started serving, not stamped again by a decision made on the
    # index entry from before it served.
    assert held["servedFrom"] == T0.isoformat()


def test_someone_elses_write_at_a_newer_version_is_decided_on_again() -> None:
    kube, written = fake("fraud-1.0.0"), StatusLedger()
    candidate = status(candidateVersion="1.0.0")
    roles(kube, [mv("1.0.0", "5", {"phase": "Registered"})], candidate, written)
    # A newer resourceVersion whose status lacks our write (a hand edit, or our write
    # lost): the index entry is used as it is, and the patch is written again.
    roles(kube, [mv("1.0.0", "7", {"phase": "Registered"})], candidate, written, 1)
    assert len(kube.writes) == 2


def test_without_a_ledger_every_reconcile_decides_on_the_index() -> None:
    kube = fake("fraud-1.0.0")
    stale = [mv("1.0.0", "5", {"phase": "Registered"})]
    for second in range(2):
        asyncio.run(
            update_roles(
                kube,
                rollout(),
                status(candidateVersion="1.0.0"),
                stale,
                T0 + timedelta(seconds=second),
            )
        )
    assert len(kube.writes) == 2


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    assert merged(target, {"a": None, "b": {"c": None, "f": 4}, "e": [2]}) == {
        "b": {"d": 3, "f": 4},
        "e": [2],
    }
    assert target == {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}  # unchanged


def test_kopf_keeps_no_diff_base_annotation() -> None:
    settings = kopf.OperatorSettings()
    lifecycle.apply_settings(settings)
    storage = settings.persistence.diffbase_storage
    body = kopf.Body(
        {
            "metadata": {
                "name": "fraud",
                "annotations": {"ferryman.dev/last-handled-configuration": '{"spec": {}}'},
            },
            "spec": {"model": "fraud"},
        }
    )
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch  # no annotation patch racing the Rollout's status write
    assert storage.fetch(body=body) is None


def test_env_proxy_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "kube.internal")
    assert client.env_proxy("https://10.0.0.1:6443") == "http://proxy.example:3128"
    assert client.env_proxy("https://kube.internal:6443") is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert client.env_proxy("https://10.0.0.1:6443") is None


def test_client_does_not_look_up_the_environment_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    load = kube_config.load_kube_config

    async def load_ours(**kwargs: Any) -> None:
        await load(config_file=str(kubeconfig), **kwargs)

    monkeypatch.setattr(kube_config, "load_kube_config", load_ours)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def connect() -> tuple[Any, Any]:
        kube = await client.Kube.connect()
        try:
            session = kube.api.rest_client._create_pool_manager()
            try:
                return session.trust_env, kube.api.configuration.proxy
            finally:
                await session.close()
        finally:
            await kube.close()

    trust_env, proxy = asyncio.run(connect())
    assert trust_env is False
    assert proxy == "http://proxy.example:3128"  # the environment's proxy still applies


# --- writes conditioned on an index entry's resourceVersion, instead of a GET before ---


class Counting(FakeKube):
    """The fake, counting reads; every stored object has a uid and a resourceVersion."""

    gets: list[tuple[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self.gets = []
        self.version = 100

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.gets.append((kind, name))
        return await super().get(api_version, kind, namespace, name)

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        answer = await super().apply(obj)
        self.version += 1
        key = (obj["apiVersion"], obj["kind"], NS, obj["metadata"]["name"])
        for held in (self.objects[key], answer):
            held["metadata"].update(resourceVersion=str(self.version), uid="uid-ours")
        return answer


def service(owner: Rollout, selector: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "fraud-1.1.0",
            "namespace": NS,
            "ownerReferences": [labels.owner_reference(owner)],
        },
        "spec": {"selector": {"v": selector}, "ports": [{"port": 80}]},
    }


def written(kube: Counting, ro: Rollout) -> dict[tuple[str, str], Any]:
    """The index as kopf would hold it right after our write."""
    asyncio.run(applied.apply_owned(kube, ro, service(ro, "a"), []))
    kube.writes, kube.gets = [], []
    return {("Service", "fraud-1.1.0"): json_copy(next(iter(kube.objects.values())))}


def test_a_write_on_an_owned_entry_is_conditioned_on_it_not_read_first() -> None:
    kube, ro = Counting(), rollout()
    index = written(kube, ro)
    answer = asyncio.run(applied.apply_owned(kube, ro, service(ro, "b"), [], observed=index))
    assert kube.gets == []
    assert kube.writes == [("apply", "Service", "fraud-1.1.0")]
    assert answer is not None and answer["spec"]["selector"] == {"v": "b"}


def test_an_entry_replaced_by_a_foreign_object_is_read_and_left_untouched() -> None:
    kube, ro = Counting(), rollout()
    index = written(kube, ro)
    # Deleted and created again by someone else; the index has not seen it yet.
    foreign = service(ro, "theirs")
    foreign["metadata"].update(ownerReferences=[], resourceVersion="999", uid="uid-theirs")
    kube.put(foreign)
    problems: list[str] = []
    answer = asyncio.run(applied.apply_owned(kube, ro, service(ro, "b"), problems, observed=index))
    assert answer is None and kube.writes == []  # the fake raises on a foreign overwrite
    assert kube.gets == [("Service", "fraud-1.1.0")]
    assert problems and "not owned by this Rollout" in problems[0]


def test_a_delete_on_an_owned_entry_is_conditioned_on_it_not_read_first() -> None:
    kube, ro = Counting(), rollout()
    index = written(kube, ro)
    problems: list[str] = []
    asyncio.run(
        applied.delete_owned(kube, ro, "v1", "Service", "fraud-1.1.0", problems, indexed=index)
    )
    assert kube.gets == [] and kube.writes == [("delete", "Service", "fraud-1.1.0")]


def test_a_delete_of_an_entry_replaced_by_a_foreign_object_leaves_it() -> None:
    kube, ro = Counting(), rollout()
    index = written(kube, ro)
    foreign = service(ro, "theirs")
    foreign["metadata"].update(ownerReferences=[], resourceVersion="999", uid="uid-theirs")
    kube.put(foreign)
    problems: list[str] = []
    asyncio.run(
        applied.delete_owned(kube, ro, "v1", "Service", "fraud-1.1.0", problems, indexed=index)
    )
    assert kube.writes == [] and kube.gets == [("Service", "fraud-1.1.0")]
    assert problems and ("v1", "Service", NS, "fraud-1.1.0") in kube.objects


class CountingCluster(Cluster):
    gets: list[tuple[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self.gets = []

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.gets.append((kind, name))
        return await super().get(api_version, kind, namespace, name)


def test_a_weight_move_writes_an_indexed_route_without_reading_it_first() -> None:
    kube = CountingCluster()
    sim = Sim(canary_spec([{"setWeight": 20}, {"pause": {}}]), kube=kube, index_lag=1)
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    retarget(sim, "1.1.0")
    sim.run_until(lambda s: s.status.phase == RolloutPhase.PAUSED)
    assert sim.route is not None and sim.route.candidate_weight == 20
    kube.gets = []
    sim.reconcile("promote")  # 20% -> 100%: a transition, the route from the index
    sim.run_until(lambda s: s.status.phase == RolloutPhase.HEALTHY)
    assert sim.route is not None and sim.route.stable == "1.1.0"
    assert ("HTTPRoute", "fraud") not in kube.gets
    # The old version went on conditioned deletes: no read of its objects either.
    assert not [g for g in kube.gets if g[1] == "fraud-1.0.0"], kube.gets
    no_weight_on_unready(sim)
    route_moves_before_capacity_goes(sim)


# --- an absence our own read found is not read again (the route before it exists) -------


def test_our_own_read_of_an_absent_object_is_trusted_for_max_age() -> None:
    book = Ledger()
    assert not known_absent(book, "HTTPRoute", NS, "fraud", 0.0)  # never read: read it
    note(book, "HTTPRoute", NS, "fraud", None)
    at = book[(NS, "HTTPRoute", "fraud")].at
    assert known_absent(book, "HTTPRoute", NS, "fraud", at + 1)
    assert not known_absent(book, "HTTPRoute", NS, "fraud", at + MAX_AGE + 1)
    note(book, "HTTPRoute", NS, "fraud", {"metadata": {"resourceVersion": "3"}})
    assert not known_absent(book, "HTTPRoute", NS, "fraud", at + 1)  # there since


def test_a_route_believed_absent_is_read_before_it_is_written() -> None:
    """The route was absent at our last read; someone else created one since. The
    decision, made as if there were none, writes no route over it (the write is preceded
    by a read), removes no capacity and keeps the status it was decided from."""
    sim = paused_at_ten()
    rollout = rollout_of(sim)
    decision = decide(sim, rollout, "abort")
    someone = {"apiVersion": "v1", "kind": "ConfigMap", "name": "theirs", "uid": "uid-9"}
    kube = cluster(sim, rollout, route_owner=someone)
    before = kube.objects[ROUTE]
    seen = dataclasses.replace(
        snapshot(sim, rollout, kube), route=None, route_read=False, foreign_route=False
    )
    seen.blocked = None
    done = asyncio.run(executor.execute(kube, seen, decision))
    assert kube.objects[ROUTE] == before
    assert not any(w[1] == "HTTPRoute" or w[0] == "delete" for w in kube.writes), kube.writes
    assert kube.statuses[("rollouts", EXEC_NS, "fraud")]["status"]["candidateVersion"] == "1.1.0"
    assert done.status.weights is None


def first_rollout_over_plain_services() -> tuple[Rollout, Any, FakeKube]:
    """A Rollout just created over plain Services (no status, nothing of it in the
    cluster), its first decision, and a fake holding only the Rollout."""
    spec = canary_spec([{"setWeight": 50}, {"pause": {}}], trafficRouting={"service": {}})
    new = Rollout.model_validate(
        {
            "apiVersion": "ferryman.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {
                "name": "fraud",
                "namespace": EXEC_NS,
                "uid": "uid-1",
                "resourceVersion": "1",
                "generation": 1,
            },
            "spec": spec.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
    )
    router = router_for(new.spec)
    first = machine.decide(
        new.spec,
        new.status,
        Observed(
            versions=(VersionRecord("fraud-1.0.0", "1.0.0"),),
            deployments={},
            now=T0,
            capabilities=router.capabilities,
            generation=1,
        ),
    )
    kube = FakeKube()
    kube.put_status("rollouts", EXEC_NS, "fraud", "1", new.status.model_dump(by_alias=True))
    return new, first, kube


def first_snapshot(new: Rollout, kube: FakeKube) -> executor.Snapshot:
    """As ``handlers.rollouts.reconcile`` sees it when our own last read found the live
    Service absent (``ledger.known_absent``): route None, not read."""
    ledger = Ledger()
    note(ledger, "Service", EXEC_NS, "fraud", None)
    return executor.Snapshot(
        rollout=new,
        router=router_for(new.spec),
        route=None,
        foreign_route=False,
        blocked=None,
        by_version={"1.0.0": exec_mv("1.0.0")},
        deployments={},
        deployment_names={},
        written=new.status.model_dump(by_alias=True, mode="json"),
        now=T0,
        route_read=False,
        ledger=ledger,
    )


def test_a_first_rollout_over_plain_services_with_the_route_known_absent_is_not_held() -> None:
    """The live Service is absent as our own last read found it and absent when read again
    in the transition: the two agree, so nothing holds the first decision (a hold here
    recurred every reconcile, forever, with no phase: the e2e fuzz test's finding)."""
    new, first, kube = first_rollout_over_plain_services()
    assert children.transition(first_snapshot(new, kube), first) is not None  # re-reads
    done = asyncio.run(executor.execute(kube, first_snapshot(new, kube), first))
    assert not done.held
    assert done.wrote and done.status.phase == first.status.phase is not None
