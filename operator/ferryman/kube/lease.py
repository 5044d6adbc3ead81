"""Leader election on a ``coordination.k8s.io/v1`` Lease: two replicas, one writer.

Why it exists: with more than one replica, only one process may reconcile (kopf writes
finalizers, annotations and events; ferryman writes routes, Deployments and status).
``ferryman.main`` calls :meth:`Elector.acquire` BEFORE kopf starts, so a standby makes
no request but the Lease GET, then runs the operator under :meth:`Elector.hold`, which
returns when the operator ends or raises :class:`LeaseLost`.

Protocol (client-go's, ``k8s.io/client-go/tools/leaderelection``; the pinned client's
``kubernetes.aio.leaderelection`` implements the loop, this module adds what it lacks):

- The Lease's spec holds ``holderIdentity`` (this process: the pod name),
  ``leaseDurationSeconds``, ``acquireTime`` (when this holder took it), ``renewTime``
  (its last renewal) and ``leaseTransitions`` (incremented on every change of holder;
  the library leaves it alone, :class:`IdentifiedLeaseLock` counts it). Times are
  written in UTC (the library's own conversion assumes the local zone is UTC).
- Every write is a PUT of the object read just before, with its ``resourceVersion``: of
  two candidates writing at once the API server accepts one and answers 409 Conflict to
  the other (optimistic concurrency), which then simply stays standby.
- A candidate polls every ``retryPeriod`` and takes the Lease when its record has not
  changed for ``leaseDuration`` as measured on the candidate's own monotonic clock since
  it first saw that record (no comparison of two machines' clocks; client-go's
  ``observedTime``; a wall-clock step, NTP or a resumed VM, changes nothing), or when it
  has no holder (released: :meth:`Elector.release`). The library measures this on the
  wall clock (``time.time()``); :class:`MonotonicElection` replaces that check.
- A Lease that vanished (deleted by hand) while another identity held it is created by
  a candidate that saw that holder only ``leaseDuration`` after it last saw the record
  change (monotonic): its holder may still be writing until its renew deadline.
- The leader renews every ``retryPeriod``; when it has not managed to for
  ``renewDeadline`` it has lost and must stop writing at once. Two guards say so: the
  renew loop (monotonic, :meth:`MonotonicElection.renew_loop`), and a watchdog on this
  process's monotonic clock (a renewal request that hangs cannot keep a stale leader
  writing). The watchdog counts from when the last successful renewal was sent and looks
  every second, so a leader that cannot renew has exited renewDeadline + 1 s after that;
  a standby saw that renewal no earlier than it was sent and waits leaseDuration: with
  the defaults (10 / 7 / 2 s) the old leader has stopped at least 2 s before any standby
  may take over.

Failover after the leader dies (SIGKILL): the leader renewed 0 to one retryPeriod before
the kill, a standby saw that renewal at its next poll (0 to one retryPeriod after) and
takes over leaseDuration after seeing it, at a poll: about leaseDuration +- retryPeriod,
8-12 s with the defaults, plus request latencies (docs/reliability.md has measured
figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kubernetes.aio.leaderelection.leaderelection as _library
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.leaderelection.electionconfig import Config
from kubernetes.aio.leaderelection.leaderelection import LeaderElection
from kubernetes.aio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.aio.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The leader could not renew its Lease within the renew deadline: another process
    may hold it now. The caller must stop writing at once (``ferryman.main`` exits)."""


@dataclass(frozen=True)
class Timings:
    """Leader-election timings, seconds: ferryman's defaults 10 / 7 / 2 (client-go's are
    15 / 10 / 2; ``ferryman.settings.LeaderElection`` says why)."""

    lease_duration: int = 10
    renew_deadline: float = 7.0
    retry_period: float = 2.0


class IdentifiedLeaseLock(LeaseLock):
    """The library's ``LeaseLock`` with what it lacks: a timeout on every request (one
    retry period), ``leaseTransitions`` counted on a change of holder, the leader's
    renewal as one request (an update of the Lease its last write returned, no read
    first: client-go's fast path, so the leader makes 30 requests a minute with the
    default timings, a standby 30 reads), quiet handling of
    the expected answers (404 before the Lease exists, 409 when another candidate wrote
    first), a log line when the holder seen changes, and ``renewed_at`` (monotonic
    seconds of this process's last successful write) for the watchdog."""

    def __init__(
        self, name: str, namespace: str, identity: str, api: client.ApiClient, timeout: float
    ) -> None:
        super().__init__(name, namespace, identity, api)
        self.timeout = timeout
        self.renewed_at: float | None = None
        self.holder_seen: str | None = None
        # The Lease as this process's last successful write returned it: the leader's
        # next renewal writes over it without reading first (client-go's fast path).
        self._written: Any = None

    def time_str_to_iso(self, str_time: str) -> str | None:
        """The library's record times are ``str(datetime.fromtimestamp(t))``: naive local
        time, without ``.%f`` when the microseconds are 0 (its parser then fails and the
        renewal writes no renewTime). Read both forms, as local time, and write UTC."""
        try:
            parsed = dt.datetime.fromisoformat(str_time)
        except (TypeError, ValueError):
            return None
        return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    async def get(self, name: str, namespace: str) -> Any:
        written, self._written = self._written, None
        if written is not None:
            # The leader renewing: assume the Lease is as we wrote it. If anyone wrote
            # since, the update is refused (409) and the next round reads it.
            self.lease_reference = written
            return True, self.election_record(written)
        try:
            lease = await self.api_instance.read_namespaced_lease(
                name, namespace, _request_timeout=self.timeout
            )
        except ApiException as e:
            return False, e
        except (TimeoutError, OSError, aiohttp.ClientError) as e:
            # The library logs the exception's reason and retries at the next period.
            return False, ApiException(status=0, reason=f"{type(e).__name__}: {e}")
        self.lease_reference = lease
        record = self.election_record(lease)
        if record.holder_identity != self.holder_seen:
            self.holder_seen = record.holder_identity
            if record.holder_identity != self.identity:
                log.info(
                    "Lease %s/%s is held by %s; %s waits as standby",
                    namespace,
                    name,
                    record.holder_identity or "nobody",
                    self.identity,
                )
        return True, record

    async def create(self, name: str, namespace: str, election_record: Any) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            spec=self.update_lease(election_record),
        )
        if body.spec is not None:
            body.spec.lease_transitions = 0
        return await self._write(
            self.api_instance.create_namespaced_lease(
                namespace, body, _request_timeout=self.timeout
            )
        )

    async def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        lease = self.lease_reference
        if lease is None:
            return False
        previous = lease.spec.holder_identity if lease.spec else None
        lease.spec = self.update_lease(updated_record, lease.spec)
        if previous != updated_record.holder_identity:
            lease.spec.lease_transitions = (lease.spec.lease_transitions or 0) + 1
        return await self._write(
            self.api_instance.replace_namespaced_lease(
                name, namespace, lease, _request_timeout=self.timeout
            )
        )

    async def _write(self, request: Awaitable[Any]) -> bool:
        # The deadline counts from the moment the write was sent, not answered: the API
        # server stored it after that, so no standby can have seen it earlier, and a
        # slow answer does not stretch the leader's tenure past what the standbys count.
        sent = time.monotonic()
        try:
            self._written = await request
        except ApiException as e:
            if e.status == 409:
                log.info("Lease %s/%s: another candidate wrote first", self.namespace, self.name)
            else:
                log.warning("writing Lease %s/%s: HTTP %s", self.namespace, self.name, e.status)
            return False
        except (TimeoutError, OSError, aiohttp.ClientError) as e:
            what = f"{type(e).__name__}: {e}"
            log.warning("writing Lease %s/%s: %s", self.namespace, self.name, what)
            return False
        self.renewed_at = sent
        return True


def _not_found(error: object) -> bool:
    """Whether a failed Lease read is a clean 404 (the API server's own JSON Status, not
    a proxy's page): only then is the Lease absent and may be created."""
    if not isinstance(error, ApiException) or error.body is None:
        return False
    try:
        return bool(json.loads(error.body)["code"] == 404)
    except (ValueError, TypeError, KeyError):
        return False


class MonotonicElection(LeaderElection):
    """The library's ``LeaderElection`` with its lease-expiry check and renew deadline on
    this process's monotonic clock (module docstring; client-go's ``tryAcquireOrRenew``
    and ``renew``), and a vanished Lease re-created only once its last holder's lease
    has run out. The record's times are still written from the library's wall clock."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.observed_at: float | None = None  # monotonic seconds the record last changed

    def _observe(self, record: LeaderElectionRecord) -> None:
        self.observed_record, self.observed_at = record, time.monotonic()

    def _other_holds(self) -> bool:
        """Another identity's record was seen changing less than leaseDuration ago."""
        seen, lock = self.observed_record, self.election_config.lock
        return (
            seen is not None
            and seen.holder_identity not in (None, lock.identity)
            and self.observed_at is not None
            and time.monotonic() - self.observed_at < self.election_config.lease_duration
        )

    async def try_acquire_or_renew(self) -> bool:
        """One poll: read the Lease; create it, take it or renew it when allowed. Whether
        this candidate holds it now."""
        lock, duration = self.election_config.lock, self.election_config.lease_duration
        # The record's times from the library's clock, in its format (``time_str_to_iso``).
        wall = _library.time.time()  # type: ignore[attr-defined]
        now = str(dt.datetime.fromtimestamp(wall))
        mine = LeaderElectionRecord(lock.identity, str(duration), now, now)
        found, old = await lock.get(lock.name, lock.namespace)
        if not found:
            if not _not_found(old):
                why = getattr(old, "reason", old)
                log.warning("reading Lease %s/%s: %s", lock.namespace, lock.name, why)
                return False
            if self._other_holds():
                log.info(
                    "Lease %s/%s vanished while another identity held it; %s waits out "
                    "its lease duration",
                    lock.namespace,
                    lock.name,
                    lock.identity,
                )
                return False
            if not await lock.create(
                name=lock.name, namespace=lock.namespace, election_record=mine
            ):
                return False
            self._observe(mine)
            return True
        if not isinstance(old, LeaderElectionRecord) or None in (
            old.holder_identity,
            old.lease_duration,
            old.acquire_time,
            old.renew_time,
        ):
            return await self.update_lock(mine)  # released, or not a record: take it
        if self.observed_record is None or old.__dict__ != self.observed_record.__dict__:
            self._observe(old)
        if old.holder_identity != lock.identity and self._other_holds():
            return False
        if old.holder_identity == lock.identity:
            mine.acquire_time = old.acquire_time
        return await self.update_lock(mine)

    async def update_lock(self, leader_election_record: LeaderElectionRecord) -> bool:
        """Write ``leader_election_record``; whether it was written."""
        lock = self.election_config.lock
        if not await lock.update(lock.name, lock.namespace, leader_election_record):
            return False
        self._observe(leader_election_record)
        return True

    async def renew_loop(self) -> None:
        """Renew every retry period; return when no renewal succeeded for the renew
        deadline (monotonic)."""
        retry = self.election_config.retry_period
        while True:
            deadline = time.monotonic() + self.election_config.renew_deadline
            renewed = False
            while not renewed and time.monotonic() < deadline:
                renewed = await self.try_acquire_or_renew()
                if not renewed:
                    await asyncio.sleep(retry)
            if not renewed:
                return
            await asyncio.sleep(retry)


async def _never() -> None:
    await asyncio.Event().wait()


class Elector:
    """One candidate for the Lease ``namespace/name`` as ``identity``, over ``api``
    (whose User-Agent should carry the identity too)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        timings: Timings = Timings(),
    ) -> None:
        self.timings = timings
        self.identity = identity
        self.lock = IdentifiedLeaseLock(name, namespace, identity, api, timings.retry_period)
        # Raises ValueError unless lease > renew deadline > 1.2 x retry period >= 1.
        self.election = MonotonicElection(
            Config(
                self.lock,
                lease_duration=timings.lease_duration,
                renew_deadline=timings.renew_deadline,
                retry_period=timings.retry_period,
                onstarted_leading=_never,
                onstopped_leading=_never,
            )
        )

    async def acquire(self) -> None:
        """Wait (polling every retry period, reading only) until this candidate holds
        the Lease. Never returns otherwise; cancel it to give up."""
        await self.election.acquire()
        log.info("%s acquired Lease %s/%s", self.identity, self.lock.namespace, self.lock.name)

    async def hold(self, work: Awaitable[object]) -> None:
        """Run ``work`` (the operator) while renewing the Lease. Returns ``work``'s result
        when it ends (then the caller may :meth:`release`); raises :class:`LeaseLost`
        as soon as a renewal misses the deadline, with ``work`` cancelled."""
        job = asyncio.ensure_future(work)
        renew = asyncio.ensure_future(self.election.renew_loop())
        watchdog = asyncio.ensure_future(self._watchdog())
        try:
            await asyncio.wait({job, renew, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (renew, watchdog):
                task.cancel()
        if job.done():
            job.result()  # the operator's own exception, if any
            return
        job.cancel()
        raise LeaseLost(
            f"{self.identity} did not renew Lease {self.lock.namespace}/{self.lock.name} "
            f"within {self.timings.renew_deadline:g}s"
        )

    async def _watchdog(self) -> None:
        """Return when the last successful write is older than the renew deadline."""
        while True:
            renewed = self.lock.renewed_at
            if renewed is not None and time.monotonic() - renewed > self.timings.renew_deadline:
                return
            await asyncio.sleep(min(1.0, self.timings.retry_period / 2))

    async def release(self) -> None:
        """Give the Lease up (after the operator stopped cleanly): empty holder, so a
        standby takes it at its next poll instead of waiting out the lease duration
        (client-go's ReleaseOnCancel). Best effort: a failure leaves it to expire."""
        with contextlib.suppress(ApiException, TimeoutError, OSError, aiohttp.ClientError):
            found, record = await self.lock.get(self.lock.name, self.lock.namespace)
            lease = self.lock.lease_reference
            if not found or lease is None or lease.spec is None:
                return
            if not isinstance(record, LeaderElectionRecord):
                return
            if record.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = dt.datetime.now(dt.UTC)
            await self.lock.api_instance.replace_namespaced_lease(
                self.lock.name, self.lock.namespace, lease, _request_timeout=self.lock.timeout
            )
            log.info("%s released Lease %s/%s", self.identity, self.lock.namespace, self.lock.name)
