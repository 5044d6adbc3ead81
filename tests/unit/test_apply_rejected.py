"""A write the API server refuses is reported, not retried in a tight loop: ``Kube.apply``
turns the client-side HTTP errors into ``ApplyRejected`` (and lets transient ones through);
the executor turns them into the ``ApplyFailed`` condition and one Warning Event;
names that cannot name ferryman's objects make the Rollout Invalid before any write."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.aio.client import ApiException
from kubernetes.aio.dynamic.exceptions import api_exception

from cases.api_cases import model_version, rollout
from ferryman.api.common import ConditionStatus
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout, RolloutStatus
from ferryman.handlers import applied, executor, validity
from ferryman.kube.client import ApplyRejected, Conflict, Kube, apply_body
from ferryman.plan.decision import VersionRecord

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mdots.v1.2.0"}}
MESSAGE = 'Service "mdots.v1.2.0" is invalid: metadata.name: Invalid value: "mdots.v1.2.0"'


class FakeDynamic:
    def __init__(self, status: int) -> None:
        self.status = status

    async def request(self, *_: Any, **__: Any) -> Any:
        body = json.dumps({"kind": "Status", "message": MESSAGE, "code": self.status})
        try:
            raise ApiException(status=self.status, reason="Refused", body=body)
        except ApiException as e:
            raise api_exception(e) from e


def _kube(status: int) -> Kube:
    kube = Kube.__new__(Kube)
    kube._dynamic = FakeDynamic(status)  # type: ignore[assignment]
    kube._resources = {("v1", "Service"): SimpleNamespace(path=lambda **_: "/api/v1/x")}
    return kube


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_side_errors_become_apply_rejected(status: int) -> None:
    with pytest.raises(ApplyRejected) as caught:
        asyncio.run(_kube(status).apply(SERVICE))
    e = caught.value
    assert (e.kind, e.name, e.status, e.reason) == ("Service", "mdots.v1.2.0", status, MESSAGE)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"])))
def test_an_apply_body_reads_back_as_yaml_whatever_the_text(value: str) -> None:
    # Found by the reconcile fuzz (tests/cases/fuzz_regressions/astral-character-in-
    # lineage.yaml): json.dumps' surrogate pair for an emoji, and a raw U+0085, are
    # refused by the API server's YAML reader.
    obj = {"metadata": {"annotations": {"a": value, "b": "\U0001f600\\ud83d\\ude00\x85"}}}
    body = apply_body(obj).decode()
    assert not re.search(r"(?<!\\)(\\\\)*\\ud[89ab]", body), body
    assert yaml.safe_load(body) == obj


@pytest.mark.parametrize("status", [500, 503])
def test_other_errors_propagate_as_they_are(status: int) -> None:
    with pytest.raises(ApiException) as caught:
        asyncio.run(_kube(status).apply(SERVICE))
    assert not isinstance(caught.value, ApplyRejected)


def test_a_failed_resource_version_precondition_is_a_conflict() -> None:
    # An apply is 409 only when it named a resourceVersion (force_conflicts takes
    # field conflicts): the object changed since, read it again (handlers.applied).
    with pytest.raises(Conflict):
        asyncio.run(_kube(409).apply(SERVICE))


def _rollout(name: str = "fraud") -> Rollout:
    return Rollout.model_validate(rollout(name=name))


def test_apply_failed_condition_and_one_event_per_new_failure() -> None:
    ro, status = _rollout(), RolloutStatus()
    failure = applied.ApplyFailure("the API server refused Service x (HTTP 422): bad")
    assert executor.set_apply_failed(ro, status, [failure], NOW) == failure
    (cond,) = status.conditions or []
    assert (cond.type, cond.status, cond.reason) == ("ApplyFailed", ConditionStatus.TRUE, "Refused")
    assert cond.message == failure
    # The same refusal again: no second Event.
    assert executor.set_apply_failed(ro, status, [failure], NOW) is None
    # Accepted at last: the condition turns False, no Event.
    assert executor.set_apply_failed(ro, status, [], NOW) is None
    (cond,) = status.conditions or []
    assert cond.status == ConditionStatus.FALSE and cond.reason == "Applied"
    # A Rollout that never failed gets no such condition.
    fresh = RolloutStatus()
    assert executor.set_apply_failed(ro, fresh, [], NOW) is None and not fresh.conditions


def test_apply_failed_message_fits_the_status_schema() -> None:
    status = RolloutStatus()
    failures = [applied.ApplyFailure("x" * 1000) for _ in range(5)]
    message = executor.set_apply_failed(_rollout(), status, failures, NOW)
    assert message is not None and len(message) <= 2048


def _versions(*mvs: ModelVersion) -> tuple[tuple[VersionRecord, ...], dict[str, Any]]:
    records = tuple(VersionRecord(m.metadata.name, m.spec.version) for m in mvs)
    return records, {m.spec.version: m for m in mvs}


def test_a_rollout_whose_name_cannot_name_its_services_is_invalid() -> None:
    records, by_version = _versions(ModelVersion.model_validate(model_version(name="fraud-1")))
    problem = validity.name_problem(_rollout("r" * 56), records, by_version)
    assert problem is not None and "Rollout name must be at most 55 characters" in problem
    assert validity.name_problem(_rollout("r" * 55), records, by_version) is None


def test_a_target_model_version_whose_name_cannot_name_a_service_is_refused() -> None:
    bad = ModelVersion.model_validate(model_version(name="mdots.v1.3.0"))
    records, by_version = _versions(bad)
    problem = validity.name_problem(_rollout(), records, by_version)
    assert problem is not None
    assert problem.startswith("ModelVersion mdots.v1.3.0 cannot be served:")
    assert "DNS-1035 label" in problem
    # A badly named version that is not the target is no concern of this Rollout.
    ok = ModelVersion.model_validate(model_version(name="fraud-1-4-0", version="1.4.0"))
    records, by_version = _versions(bad, ok)
    pinned = _rollout()
    pinned.spec.target.version = "1.4.0"
    assert validity.name_problem(pinned, records, by_version) is None


@pytest.mark.parametrize("mv_name", ["fraud", "fraud-preview"])
def test_a_model_version_named_like_the_rollouts_own_service_is_refused(mv_name: str) -> None:
    """A ModelVersion named after the Rollout (or its preview Service) would make its
    per-version Service the live or preview one: the Rollout is Invalid instead."""
    mv = ModelVersion.model_validate(model_version(name=mv_name, version="1.3.0"))
    records, by_version = _versions(mv)
    target = _rollout()
    target.spec.target.version = "1.3.0"
    problem = validity.name_problem(target, records, by_version)
    assert problem is not None and f"ModelVersion {mv_name} (version 1.3.0)" in problem
