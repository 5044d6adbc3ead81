"""Who wrote what, from the API server's audit log: the single-writer proof of leader
election (tests/e2e/test_ha.py) and its failover times.

Every ferryman request carries ``User-Agent: ferryman/<version> (<identity>)`` (its own
client and kopf's, ferryman.kube.client / ferryman.handlers.identity), so two replicas
sharing one ServiceAccount are told apart by the audit event's ``userAgent``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

USER_AGENT = re.compile(r"ferryman/\S+ \(([^)]+)\)")
READS = frozenset({"get", "list", "watch"})


@dataclass(frozen=True)
class Write:
    """One non-read request (create, update, patch, delete, ...) as audited."""

    at: dt.datetime  # requestReceivedTimestamp, aware UTC
    holder: str  # the identity in the User-Agent
    verb: str
    resource: str  # resource[/subresource]
    name: str

    @property
    def is_lease(self) -> bool:
        return self.resource == "leases"


def holder_of(event: dict[str, Any]) -> str | None:
    match = USER_AGENT.search(event.get("userAgent") or "")
    return match.group(1) if match else None


def writes(events: Iterable[dict[str, Any]], identities: Iterable[str]) -> list[Write]:
    """The writes of ``identities`` among audit ``events``, in the order received."""
    wanted = set(identities)
    out = []
    for e in events:
        holder = holder_of(e)
        if holder not in wanted or e.get("verb") in READS:
            continue
        ref = e.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        at = dt.datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00"))
        assert holder is not None
        out.append(Write(at, holder, e["verb"], resource, ref.get("name", "")))
    return sorted(out, key=lambda w: w.at)


def runs(ordered: list[Write]) -> list[list[Write]]:
    """Consecutive writes of the same holder, grouped: one group per tenure when a
    single writer at a time wrote."""
    out: list[list[Write]] = []
    for w in ordered:
        if out and out[-1][0].holder == w.holder:
            out[-1].append(w)
        else:
            out.append([w])
    return out


# A request the leader wrote into its socket just before the SIGKILL still reaches the API
# server after it (the kernel sends what the process had written), and the audit log stamps
# it when received: seen in CI as a Lease renewal received after the test's kill time. A
# killed process makes no new request, so anything received later than this is a breach.
IN_FLIGHT = dt.timedelta(seconds=1)


def single_writer_problems(
    ordered: list[Write], leaders: list[str], kills: list[dt.datetime]
) -> list[str]:
    """Sentences for every breach of "one writer at a time": ``leaders`` is the
    sequence of Lease holders the test saw (one more than ``kills``, the moments the
    holder was SIGKILLed). The writes must form exactly one run per tenure, in that
    order, each run ending before the kill that ended its tenure and the next one
    starting after it (the killed one's may arrive ``IN_FLIGHT`` after the kill)."""
    problems = []
    groups = runs(ordered)
    holders = [g[0].holder for g in groups]
    if holders != leaders:
        problems.append(f"writers in turn {holders}, Lease holders in turn {leaders}")
    for i, kill in enumerate(kills):
        if i + 1 >= len(groups):
            break
        last, first = groups[i][-1], groups[i + 1][0]
        if last.at > kill + IN_FLIGHT:
            late = (last.at - kill).total_seconds()
            problems.append(
                f"{last.holder} wrote {last.verb} {last.resource} {late:.3f}s after its kill"
            )
        if first.at < kill:
            problems.append(f"{first.holder} wrote {first.verb} {first.resource} before the kill")
    return problems


def standby_problems(
    events: Iterable[dict[str, Any]], leaders: list[str], kills: list[dt.datetime]
) -> list[str]:
    """Sentences for every request a standby made other than a GET of the Lease. A
    process is standby from its (re)start until its next Lease write: the second of
    ``leaders`` from the beginning, and each killed leader from its kill on."""
    waits: list[tuple[str, dt.datetime | None]] = []  # (identity, standby from)
    if len(leaders) > 1:
        waits.append((leaders[1], None))
    waits += list(zip(leaders[:-1], kills, strict=False))
    timed = []
    for e in events:
        who = holder_of(e)
        if who is None:
            continue
        at = dt.datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00"))
        timed.append((at, who, e))
    timed.sort(key=lambda t: t[0])
    problems = []
    for who, start in waits:
        for at, by, e in timed:
            if by != who or (start is not None and at <= start):
                continue
            ref = e.get("objectRef") or {}
            if ref.get("resource") == "leases" and e.get("verb") != "get":
                break  # it holds the Lease from here on
            if (e.get("verb"), ref.get("resource")) != ("get", "leases"):
                problems.append(f"standby {who} made {e.get('verb')} {ref.get('resource')} at {at}")
    return problems


@dataclass(frozen=True)
class Failover:
    """Seconds from the leader's SIGKILL to the new holder's Lease write (acquired) and
    to its first write of anything else (reconciling again); None: no such write."""

    acquired_s: float | None
    first_write_s: float | None


def failovers(ordered: list[Write], leaders: list[str], kills: list[dt.datetime]) -> list[Failover]:
    out = []
    for kill, leader in zip(kills, leaders[1:], strict=False):
        after = [w for w in ordered if w.holder == leader and w.at >= kill]
        lease = next((w for w in after if w.is_lease), None)
        other = next((w for w in after if not w.is_lease), None)
        out.append(
            Failover(
                (lease.at - kill).total_seconds() if lease else None,
                (other.at - kill).total_seconds() if other else None,
            )
        )
    return out
