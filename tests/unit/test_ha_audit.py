"""The single-writer proof (harness.ha) on synthetic audit events: it accepts one
holder at a time in the Lease's order and reports interleaved writers, writes after a
kill, writes before it, and a missing tenure."""

from __future__ import annotations

import datetime as dt
from typing import Any

from harness import ha

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def event(t: float, who: str, verb: str = "patch", resource: str = "deployments") -> dict[str, Any]:
    return {
        "requestReceivedTimestamp": (T0 + dt.timedelta(seconds=t))
        .isoformat()
        .replace("+00:00", "Z"),
        "userAgent": f"ferryman/0.1.0 ({who}) kopf/1.45.2",
        "verb": verb,
        "objectRef": {"resource": resource, "name": "x"},
    }


def at(t: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=t)


def test_one_writer_at_a_time_passes_and_failover_is_measured() -> None:
    events = [
        event(0, "a", "create", "leases"),
        event(1, "a"),
        event(1.5, "b", "get", "leases"),  # the standby only reads
        event(2, "a", "update", "leases"),
        event(9, "b", "update", "leases"),
        event(9.5, "b"),
        event(10, "other", "delete"),  # not one of ours
    ]
    writes = ha.writes(events, ["a", "b"])
    assert [w.holder for w in writes] == ["a", "a", "a", "b", "b"]
    assert ha.single_writer_problems(writes, ["a", "b"], [at(5)]) == []
    (f,) = ha.failovers(writes, ["a", "b"], [at(5)])
    assert (f.acquired_s, f.first_write_s) == (4.0, 4.5)


def test_interleaved_writers_are_reported() -> None:
    writes = ha.writes([event(0, "a"), event(1, "b"), event(2, "a")], ["a", "b"])
    problems = ha.single_writer_problems(writes, ["a"], [])
    assert problems == ["writers in turn ['a', 'b', 'a'], Lease holders in turn ['a']"]


def test_a_write_after_the_kill_or_before_it_is_reported() -> None:
    writes = ha.writes([event(0, "a"), event(6.5, "a"), event(7, "b")], ["a", "b"])
    assert ha.single_writer_problems(writes, ["a", "b"], [at(5)]) == [
        "a wrote patch deployments 1.500s after its kill"
    ]
    # A request in flight at the kill (written to the socket before it) is received just
    # after it: not a write of the killed process after its death.
    writes = ha.writes(
        [event(0, "a"), event(5.02, "a", "update", "leases"), event(7, "b")], ["a", "b"]
    )
    assert ha.single_writer_problems(writes, ["a", "b"], [at(5)]) == []
    writes = ha.writes([event(0, "a"), event(4, "b")], ["a", "b"])
    assert ha.single_writer_problems(writes, ["a", "b"], [at(5)]) == [
        "b wrote patch deployments before the kill"
    ]


def test_a_tenure_without_writes_is_reported() -> None:
    writes = ha.writes([event(0, "a")], ["a", "b"])
    assert ha.single_writer_problems(writes, ["a", "b"], [at(5)]) == [
        "writers in turn ['a'], Lease holders in turn ['a', 'b']"
    ]


def test_a_standby_may_only_read_the_lease() -> None:
    events = [
        event(0, "a", "create", "leases"),
        event(0.5, "b", "get", "leases"),  # standby from the start
        event(1, "a"),
        event(6, "a", "get", "leases"),  # a restarted after its kill at 5: standby
        event(9, "b", "update", "leases"),  # b holds it from here
        event(9.5, "b", "list", "rollouts"),
    ]
    assert ha.standby_problems(events, ["a", "b"], [at(5)]) == []
    events.append(event(7, "a", "list", "rollouts"))  # a, still standby, lists
    assert ha.standby_problems(events, ["a", "b"], [at(5)]) == [
        f"standby a made list rollouts at {at(7)}"
    ]
    events.append(event(0.7, "b", "watch", "deployments"))
    assert f"standby b made watch deployments at {at(0.7)}" in ha.standby_problems(
        events, ["a", "b"], [at(5)]
    )
