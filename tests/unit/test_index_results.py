"""Every kopf index of ferryman drops an object's entry when the object stops qualifying.

kopf (1.45, kopf/_core/engines/indexing.py ``OperatorIndexers.replace``) stores a
handler's result only when it is not None, and a None leaves the object's previous entry in
place: an index function that answered ``None`` for an object that no longer qualifies (a
Deployment whose owner reference or version annotation was edited away, a Rollout moved off
a shared route, an object the model no longer reads) kept it indexed under its old key for
as long as the process ran. An empty mapping replaces the object's entries with none, so
every index function answers ``{}`` instead (the approvals index also filters out objects
being deleted, through ``when``, which kopf purges the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
import pytest
from kopf._core.engines.indexing import OperatorIndexer

import ferryman.handlers  # noqa: F401  (registers every handler)

KEY: Any = ("ml", "Deployment", "fraud-1-0-0")


def _ferryman_indexers() -> list[Any]:
    registry = kopf.get_default_registry()
    found = [
        h
        for h in registry._indexing.get_all_handlers()
        if getattr(h.fn, "__module__", "").startswith("ferryman.")
    ]
    assert len(found) >= 6  # the count grows with new indexes; none may be missed
    return found


def test_kopf_replaces_an_entry_with_nothing_only_for_an_empty_mapping() -> None:
    """The kopf behaviour the fix relies on: ``{}`` purges, so a change of kopf shows here."""
    ix = OperatorIndexer()
    ix.replace(KEY, {("ml", "fraud"): "1.0.0"})
    assert ("ml", "fraud") in ix.index
    ix.replace(KEY, {})
    assert ("ml", "fraud") not in ix.index


def _nonqualifying_bodies() -> list[dict[str, Any]]:
    meta = {"name": "x", "namespace": "ml", "uid": "u", "resourceVersion": "1"}
    return [
        {"metadata": dict(meta), "spec": {}, "status": {}},
        {"metadata": dict(meta), "spec": {"model": 3, "strategy": "?"}, "status": {}},
        {"metadata": {**meta, "ownerReferences": [{"kind": "Rollout"}]}, "spec": {}},
    ]


@pytest.mark.parametrize("raw", _nonqualifying_bodies())
def test_no_ferryman_index_answers_none(raw: dict[str, Any]) -> None:
    for handler in _ferryman_indexers():
        body = kopf.Body(raw)  # type: ignore[arg-type]
        result = handler.fn(
            body=body,
            spec=body.spec,
            status=body.status,
            meta=body.metadata,
            name=body.metadata.name,
            namespace=body.metadata.namespace,
            uid=body.metadata.uid,
            labels=body.metadata.labels,
            annotations=body.metadata.annotations,
            logger=None,
            type=None,
            event={"type": None, "object": raw},
        )
        assert isinstance(result, Mapping), (handler.id, result)
