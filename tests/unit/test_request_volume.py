"""Requests a rollout does not need (issue 12): ModelVersion status patches decided
again on an index that has not yet delivered our own write (``handlers.roles`` with
``handlers.ledger.believed_status``), kopf's diff-base annotation patches that raced the
Rollout's status write (``handlers.lifecycle.NoDiffBase``), and the client's
per-request proxy lookup (``kube.client``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes.aio import config as kube_config

from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout, RolloutStatus
from ferryman.handlers import lifecycle
from ferryman.handlers.ledger import StatusLedger, merged
from ferryman.handlers.roles import update_roles
from ferryman.kube import client
from unit.fake_kube import FakeKube
from unit.machine_sim import T0, canary_spec

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
