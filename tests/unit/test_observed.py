"""The indexes of ferryman's own objects and the server-side label selector of their
watches (``handlers.observed``)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from ferryman.handlers import ledger, observed
from ferryman.plan import labels


def resource(group: str, plural: str, kind: str, version: str = "v1") -> kopf.Resource:
    return kopf.Resource(group, version, plural, kind=kind, namespaced=True)


def test_the_watches_of_ferryman_objects_select_its_label_on_the_server() -> None:
    settings = kopf.OperatorSettings()
    observed.label_selectors(settings)
    mine = [
        resource("apps", "deployments", "Deployment"),
        resource("", "services", "Service"),
        resource("policy", "poddisruptionbudgets", "PodDisruptionBudget"),
    ]
    for res in mine:
        assert settings.watching.label_selectors.collect(res) == [
            "app.kubernetes.io/managed-by=ferryman"
        ], res
    # Never ferryman's own resources, nor anything else; nor the routes a Rollout may share
    # with their owners (issue 15: a change of an unlabelled route must reach ferryman).
    for res in [
        resource("gateway.networking.k8s.io", "httproutes", "HTTPRoute"),
        resource("networking.istio.io", "virtualservices", "VirtualService"),
        resource("ferryman.dev", "rollouts", "Rollout", "v1alpha1"),
        resource("ferryman.dev", "modelversions", "ModelVersion", "v1alpha1"),
        resource("", "configmaps", "ConfigMap"),
        resource("extensions.example", "services", "Service"),
    ]:
        assert settings.watching.label_selectors.collect(res) == [], res


def test_every_indexed_resource_is_registered_with_kopf_and_filtered_by_label() -> None:
    registry = kopf.get_default_registry()
    for indexed in observed.INDEXES:
        w = indexed.watch
        res = resource(w.group, w.plural, indexed.kind, w.version)
        handlers = [h for h in registry._indexing.get_all_handlers() if h.id == indexed.id]
        assert len(handlers) == 1, indexed.id
        assert handlers[0].selector is not None and handlers[0].selector.check(res)
        assert handlers[0].labels == {labels.MANAGED_BY: "ferryman"}


def test_the_index_keeps_the_object_without_status_nor_managed_fields() -> None:
    body: dict[str, Any] = {
        "metadata": {
            "name": "fraud-1-0-0",
            "namespace": "ml",
            "uid": "u",
            "labels": {"a": "1"},
            "annotations": {"b": "2"},
            "ownerReferences": [{"kind": "Rollout", "name": "fraud"}],
            "managedFields": [{"manager": "ferryman"}],
            "resourceVersion": "9",
            "generation": 3,
        },
        "spec": {"replicas": 2},
        "status": {"availableReplicas": 2},
    }
    out = observed.slim(body, "apps/v1", "Deployment")
    assert out == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {k: body["metadata"][k] for k in observed.KEPT_METADATA},
        "spec": {"replicas": 2},
    }
    out["spec"]["replicas"] = 3
    assert body["spec"]["replicas"] == 2  # a copy


def entry(
    name: str,
    kind: str = "Deployment",
    *,
    rv: str = "1",
    generation: int | None = 1,
    at: float = 100.0,
) -> ledger.Entry:
    meta: dict[str, Any] = {"name": name, "namespace": "ml", "resourceVersion": rv}
    if generation is not None:
        meta["generation"] = generation
    return ledger.Entry({"kind": kind, "metadata": meta}, at)


def test_lookup_finds_trusted_objects_by_kind_and_name_in_the_namespace() -> None:
    dep, svc, old = entry("a"), entry("a", "Service"), entry("b", at=100.0 - ledger.MAX_AGE)
    indexes = {
        "observed_deployments": {("ml", "a"): [dep], ("other", "b"): [dep], ("ml", "b"): [old]},
        "observed_services": {("ml", "a"): [svc]},
    }
    assert observed.lookup(indexes, "ml", ["a", "b"], ledger.Ledger(), now=100.0 + 1) == {
        ("Deployment", "a"): dep.obj,
        ("Service", "a"): svc.obj,
    }


def test_an_entry_is_trusted_for_max_age_seconds_after_its_event_or_our_read() -> None:
    book: ledger.Ledger = ledger.Ledger()
    e = entry("d", rv="5", at=0.0)
    assert ledger.trusted(e, book, ledger.MAX_AGE)
    assert not ledger.trusted(e, book, ledger.MAX_AGE + 1)  # a possible ghost: read it
    ledger.note(book, "Deployment", "ml", "d", e.obj)  # read: the same resourceVersion
    assert ledger.trusted(e, book, ledger.MAX_AGE + 1)
    ledger.note(book, "Deployment", "ml", "d", None)  # read: gone (the entry is a ghost)
    assert not ledger.trusted(e, book, 1.0)


def test_an_entry_older_than_our_last_write_is_not_trusted() -> None:
    """A lower generation than the one our write was answered with is the object before
    that write; a status update (another resourceVersion, the same generation) is not.
    Without generations, only the same resourceVersion; after our delete, nothing."""
    book: ledger.Ledger = ledger.Ledger()
    ledger.note(book, "Deployment", "ml", "d", entry("d", rv="5", generation=2).obj)
    assert not ledger.trusted(entry("d", rv="4", generation=1), book, 100.0)
    assert ledger.trusted(entry("d", rv="7", generation=2), book, 100.0)
    assert ledger.trusted(entry("d", rv="9", generation=3), book, 100.0)
    ledger.note(book, "Service", "ml", "s", entry("s", "Service", rv="5", generation=None).obj)
    assert ledger.trusted(entry("s", "Service", rv="5", generation=None), book, 100.0)
    assert not ledger.trusted(entry("s", "Service", rv="4", generation=None), book, 100.0)
    ledger.note(book, "Deployment", "ml", "d", None)  # deleted
    assert not ledger.trusted(entry("d", rv="9", generation=3), book, 100.0)


def test_records_older_than_max_age_are_pruned_and_answers_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long-lived operator touches objects that go away: without pruning the Ledger
    holds a record for each of them forever. Records older than MAX_AGE are dropped (at
    most once per MAX_AGE), and ``trusted`` answers the same with and without them for
    every entry whose watch event came before those records (the entries a record is
    there to refuse: the index behind our write, or a ghost of what we deleted)."""
    clock = [1000.0]
    monkeypatch.setattr("ferryman.handlers.ledger.time.monotonic", lambda: clock[0])
    book = ledger.Ledger()
    old = [entry(f"d{i}", rv="5", generation=2) for i in range(100)]
    for i, e in enumerate(old):
        ledger.note(book, "Deployment", "ml", f"d{i}", None if i % 2 else e.obj)
    assert len(book) == 100
    entries = [entry(n, rv="4", generation=1, at=t) for n in ("d0", "d1") for t in (900.0, 999.0)]
    entries += [entry(n, rv="5", generation=2, at=1000.0) for n in ("d0", "d2")]
    clock[0] += ledger.MAX_AGE + 1
    before = [ledger.trusted(e, book, clock[0]) for e in entries]
    ledger.note(book, "Deployment", "ml", "fresh", entry("fresh").obj)
    assert set(book) == {("ml", "Deployment", "fresh")}
    assert [ledger.trusted(e, book, clock[0]) for e in entries] == before
    clock[0] += 1  # within MAX_AGE of the last prune: no pass over the records
    ledger.note(book, "Deployment", "ml", "d0", None)
    assert len(book) == 2 and book.pruned_at == 1000.0 + ledger.MAX_AGE + 1


def test_status_writes_older_than_max_age_are_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [50.0]
    monkeypatch.setattr("ferryman.handlers.ledger.time.monotonic", lambda: clock[0])
    writes = ledger.StatusLedger()
    ledger.note_status(writes, ("modelversions", "ml", "a"), "7", {}, {"phase": "Serving"})
    clock[0] += ledger.MAX_AGE + 1
    ledger.note_status(writes, ("modelversions", "ml", "b"), "8", {}, {"phase": "Ready"})
    assert list(writes) == [("modelversions", "ml", "b")]
