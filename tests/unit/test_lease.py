"""Leader election (ferryman.kube.lease) against an in-memory Lease API with the API
server's optimistic concurrency (resourceVersion, 409 on a stale write) and a virtual
clock: acquire when absent or expired, renew, count transitions, lose on conflict or on a
hanging renewal, release; plus the settings rules, the identity and the User-Agent."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import types
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes.aio.leaderelection.leaderelection as library
import pytest
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from pydantic import ValidationError

from ferryman import main, settings
from ferryman.handlers import identity as kopf_identity
from ferryman.kube import client as kube_client
from ferryman.kube import lease as lease_mod
from ferryman.kube.lease import Elector, LeaseLost, Timings

NS, NAME = "ferryman-system", "ferryman-leader"
FAST = Timings(lease_duration=15, renew_deadline=10, retry_period=2)
# Never used for a request: each Elector's Lease API is replaced by a FakeLeases.
API_CLIENT = client.ApiClient(client.Configuration())


class Clock:
    """Virtual seconds: every sleep returns at once having moved time on by its length
    (so concurrent sleepers make time pass faster, never slower: each sleep lasts at
    least what it asked for, as a real sleep does)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self._real_sleep = asyncio.sleep

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await self._real_sleep(0)


class FakeLeases:
    """``CoordinationV1Api`` for one namespace: read / create / replace with
    resourceVersion checks. ``hang``: replace never answers (a stuck connection)."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {}  # V1Lease by name
        self.rv = 0
        self.hang = False
        self.writes: list[tuple[str, str | None]] = []  # (verb, holder)
        self.reads = 0
        self.read_errors: list[Exception] = []  # raised by the next reads, in order
        self.slow: tuple[Clock, float] | None = None  # replace answers this late (virtual s)

    def _store(self, lease: Any) -> Any:
        self.rv += 1
        stored = copy.deepcopy(lease)
        stored.metadata.resource_version = str(self.rv)
        self.objects[stored.metadata.name] = stored
        return copy.deepcopy(stored)

    async def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> Any:
        self.reads += 1
        if self.read_errors:
            raise self.read_errors.pop(0)
        if name not in self.objects:
            e = ApiException(status=404, reason="Not Found")
            e.body = json.dumps({"code": 404})
            raise e
        return copy.deepcopy(self.objects[name])

    async def create_namespaced_lease(self, namespace: str, body: Any, **_: Any) -> Any:
        if body.metadata.name in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.writes.append(("create", body.spec.holder_identity))
        return self._store(body)

    async def replace_namespaced_lease(self, name: str, namespace: str, body: Any, **_: Any) -> Any:
        if self.hang:
            await asyncio.Event().wait()
        if self.slow is not None:
            clock, seconds = self.slow
            await clock.sleep(seconds)
        current = self.objects.get(name)
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        if body.metadata.resource_version != current.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        self.writes.append(("update", body.spec.holder_identity))
        return self._store(body)

    def steal(self, holder: str) -> None:
        """Another process writes the Lease (a new resourceVersion, another holder)."""
        lease = copy.deepcopy(self.objects[NAME])
        lease.spec.holder_identity = holder
        self._store(lease)

    @property
    def spec(self) -> Any:
        return self.objects[NAME].spec


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    fake_asyncio = types.SimpleNamespace(**{**vars(asyncio), "sleep": c.sleep})
    monkeypatch.setattr(library, "time", types.SimpleNamespace(time=c.time))
    monkeypatch.setattr(library, "asyncio", fake_asyncio)
    monkeypatch.setattr(lease_mod, "time", types.SimpleNamespace(monotonic=c.time))
    monkeypatch.setattr(lease_mod, "asyncio", fake_asyncio)
    yield c


def elector(api: FakeLeases, who: str, timings: Timings = FAST) -> Elector:
    e = Elector(API_CLIENT, name=NAME, namespace=NS, identity=who, timings=timings)
    e.lock.api_instance = api  # type: ignore[assignment]
    return e


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_first_candidate_creates_the_lease_and_holds_it(clock: Clock) -> None:
    api = FakeLeases()
    run(elector(api, "a").acquire())
    assert api.writes == [("create", "a")]
    assert (api.spec.holder_identity, api.spec.lease_duration_seconds) == ("a", 15)
    assert api.spec.lease_transitions == 0
    assert api.spec.acquire_time is not None and api.spec.renew_time is not None


def test_a_standby_waits_while_renewed_and_takes_over_once_expired(clock: Clock) -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")

    async def scenario() -> float:
        await a.acquire()
        acquired = clock.now
        # While a renews every retry period, b polls and never takes the Lease.
        for _ in range(20):
            await clock.sleep(FAST.retry_period)
            assert await a.election.try_acquire_or_renew()
            assert not await b.election.try_acquire_or_renew()
        assert api.spec.holder_identity == "a"
        assert clock.now - acquired > FAST.lease_duration  # long past one lease duration
        # a dies now, just after b saw its last renewal: b takes over leaseDuration
        # after that, at its first poll past it.
        died = clock.now
        await b.acquire()
        return clock.now - died

    waited = run(scenario())
    assert FAST.lease_duration <= waited <= FAST.lease_duration + FAST.retry_period
    assert api.spec.holder_identity == "b"
    assert api.spec.lease_transitions == 1
    assert [w for w in api.writes if w[1] == "b"] == [("update", "b")]


def test_renewing_keeps_acquire_time_and_moves_renew_time(clock: Clock) -> None:
    api = FakeLeases()
    a = elector(api, "a")

    async def scenario() -> None:
        await a.acquire()
        first = copy.deepcopy(api.spec)
        await clock.sleep(FAST.retry_period)
        assert await a.election.try_acquire_or_renew()
        assert api.spec.acquire_time == first.acquire_time
        assert api.spec.renew_time > first.renew_time
        assert api.spec.lease_transitions == 0

    run(scenario())


def test_the_leader_renews_with_one_request_and_reads_again_after_a_conflict(
    clock: Clock,
) -> None:
    api = FakeLeases()
    a = elector(api, "a")

    async def scenario() -> None:
        await a.acquire()
        reads, writes = api.reads, len(api.writes)
        for _ in range(10):
            await clock.sleep(FAST.retry_period)
            assert await a.election.try_acquire_or_renew()
        assert (api.reads - reads, len(api.writes) - writes) == (0, 10)
        api.steal("a")  # someone wrote the Lease (same holder): the cached copy is stale
        assert not await a.election.try_acquire_or_renew()  # 409
        assert await a.election.try_acquire_or_renew()  # read, then renewed
        assert api.reads - reads == 1

    run(scenario())


def test_unreachable_api_server_is_retried_by_a_standby(clock: Clock) -> None:
    api = FakeLeases()
    api.read_errors = [TimeoutError(), ConnectionRefusedError(111, "refused")]
    run(elector(api, "a").acquire())  # two failed reads, then the Lease is created
    assert api.reads == 3
    assert api.spec.holder_identity == "a"


def test_a_process_restarted_with_the_same_identity_takes_its_lease_back_at_once(
    clock: Clock,
) -> None:
    api = FakeLeases()
    run(elector(api, "pod-0").acquire())
    start = clock.now
    run(elector(api, "pod-0").acquire())  # the container restarted: same pod name
    assert clock.now == start
    assert api.spec.lease_transitions == 0


def test_two_candidates_writing_at_once_one_wins_by_resource_version(clock: Clock) -> None:
    api = FakeLeases()
    run(elector(api, "a").acquire())
    api.steal("")  # released (no holder): both may take it
    b, c = elector(api, "b"), elector(api, "c")

    async def scenario() -> tuple[bool, bool]:
        # Both read the same resourceVersion, then both write.
        await b.lock.get(NAME, NS)
        await c.lock.get(NAME, NS)
        record_b = LeaderElectionRecord("b", "15", "2026-01-01 00:00:00.0", "x")
        record_c = LeaderElectionRecord("c", "15", "2026-01-01 00:00:00.0", "x")
        return await b.lock.update(NAME, NS, record_b), await c.lock.update(NAME, NS, record_c)

    assert run(scenario()) == (True, False)
    assert api.spec.holder_identity == "b"


def test_the_leader_loses_when_another_wrote_the_lease_and_stops_its_work(
    clock: Clock,
) -> None:
    api = FakeLeases()
    a = elector(api, "a")
    work_cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            work_cancelled.set()
            raise

    async def scenario() -> None:
        await a.acquire()
        api.steal("intruder")  # a's next renewal is refused (409), then sees a holder
        with pytest.raises(LeaseLost, match="did not renew"):
            await a.hold(work())
        await asyncio.sleep(0)

    run(scenario())
    assert work_cancelled.is_set()
    assert api.spec.holder_identity == "intruder"


def test_a_hanging_renewal_is_a_lost_lease_within_the_renew_deadline(clock: Clock) -> None:
    api = FakeLeases()
    a = elector(api, "a")

    async def scenario() -> float:
        await a.acquire()
        renewed = clock.now
        api.hang = True
        with pytest.raises(LeaseLost):
            await a.hold(asyncio.Event().wait())
        return clock.now - renewed

    lost_after = run(scenario())
    assert FAST.renew_deadline < lost_after <= FAST.renew_deadline + FAST.retry_period


def test_the_renew_deadline_counts_from_when_the_renewal_was_sent(clock: Clock) -> None:
    """A standby may have seen a renewal as soon as it was sent (the API server stores it
    before answering): counting the deadline from a slow answer would let the leader
    write that much longer than the standbys think, eating the lease-renew margin."""
    api = FakeLeases()
    a = elector(api, "a")

    async def scenario() -> float:
        await a.acquire()
        api.slow = (clock, 1.5)
        sent = clock.now
        assert await a.election.try_acquire_or_renew()
        assert clock.now == sent + 1.5
        return sent

    sent = run(scenario())
    assert api.writes[-1] == ("update", "a")
    assert a.lock.renewed_at == sent


def test_hold_returns_when_the_work_ends_and_release_hands_over_at_once(clock: Clock) -> None:
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")

    async def scenario() -> float:
        await a.acquire()
        assert not await b.election.try_acquire_or_renew()
        await a.hold(clock.sleep(5))
        await a.release()
        released = clock.now
        await b.acquire()
        return clock.now - released

    assert run(scenario()) <= FAST.retry_period
    assert api.spec.holder_identity == "b"
    assert api.spec.lease_transitions == 1


def test_release_leaves_another_holders_lease_alone(clock: Clock) -> None:
    api = FakeLeases()
    run(elector(api, "a").acquire())
    run(elector(api, "b").release())
    assert api.spec.holder_identity == "a"


# -- settings, identity, User-Agent ---------------------------------------------------


def test_leader_election_settings_follow_client_go_rules() -> None:
    le = settings.load(environ={}).leader_election
    assert (le.enabled, le.lease_duration_seconds, le.renew_deadline_seconds) == (False, 10, 7)
    assert le.retry_period_seconds == 2
    with pytest.raises(ValidationError, match="greater than renewDeadlineSeconds"):
        settings.LeaderElection(lease_duration_seconds=10, renew_deadline_seconds=10)
    with pytest.raises(ValidationError, match=r"1\.2 x retryPeriodSeconds"):
        settings.LeaderElection(renew_deadline_seconds=2.4, retry_period_seconds=2)
    env = {"FERRYMAN_LEADER_ELECT": "true", "FERRYMAN_LEADER_ELECTION_NAMESPACE": "ops"}
    le = settings.load(environ=env).leader_election
    assert (le.enabled, le.namespace) == (True, "ops")


def test_the_flag_turns_leader_election_on() -> None:
    assert main.parse_args(["--leader-elect"]).leader_elect is True
    assert main.parse_args([]).leader_elect is None


def test_identity_is_configured_else_pod_name_else_host_and_pid() -> None:
    assert main.identity("x", {"POD_NAME": "pod-0"}) == "x"
    assert main.identity("", {"POD_NAME": "pod-0"}) == "pod-0"
    fallback = main.identity("", {})
    host, pid = fallback.rsplit("-", 1)
    assert host and int(pid) > 0


def test_every_client_names_the_identity_in_its_user_agent() -> None:
    try:
        kube_client.identify("pod-0")
        assert kube_client.user_agent().startswith("ferryman/")
        assert kube_client.user_agent().endswith(" (pod-0)")
        info = kopf_identity.IdentifiedConnectionInfo(
            server="https://127.0.0.1:6443",
            token="t0k",
            user_agent=kopf_identity.kopf_user_agent(),
        )
        headers = info.as_http_headers()
        assert headers["Authorization"] == "Bearer t0k"
        assert "(pod-0)" in headers["User-Agent"]
        assert "kopf/" in headers["User-Agent"]
    finally:
        kube_client.identify(None)
    assert "(" not in kube_client.user_agent()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    """As aiohttp and prometheus_client bind (SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def test_a_standby_answers_liveness_and_metrics_and_frees_both_ports() -> None:
    live, metrics_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{live}/healthz"

    def get(u: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(u, timeout=5) as resp:
            return resp.status, resp.read()

    async def scenario() -> tuple[tuple[int, bytes], int, list[bool]]:
        async with main.standby_endpoints(url, "127.0.0.1", metrics_port):
            answer = await asyncio.to_thread(get, url)
            scraped, _body = await asyncio.to_thread(
                get, f"http://127.0.0.1:{metrics_port}/metrics"
            )
            busy = [_bindable(live), _bindable(metrics_port)]
        return answer, scraped, [*busy, _bindable(live), _bindable(metrics_port)]

    answer, scraped, bindable = asyncio.run(scenario())
    assert answer == (200, b'{"standby": true}')
    assert scraped == 200
    assert bindable == [False, False, True, True]  # taken while standby, free afterwards


def test_a_wall_clock_step_back_does_not_delay_a_failover(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expiry is measured on the monotonic clock: the standby's wall clock stepped back an
    hour (NTP) leaves failover at leaseDuration (+ one poll) after the leader died."""
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")
    step = {"wall": 0.0}
    monkeypatch.setattr(
        library, "time", types.SimpleNamespace(time=lambda: clock.now + step["wall"])
    )

    async def scenario() -> float:
        await a.acquire()
        for _ in range(3):
            await clock.sleep(FAST.retry_period)
            assert await a.election.try_acquire_or_renew()
            assert not await b.election.try_acquire_or_renew()
        step["wall"] = -3600.0
        died = clock.now
        await b.acquire()
        return clock.now - died

    waited = run(scenario())
    assert FAST.lease_duration <= waited <= FAST.lease_duration + FAST.retry_period


def test_a_lease_deleted_by_hand_is_created_once_its_holders_lease_ran_out(clock: Clock) -> None:
    """A standby that saw a's record waits leaseDuration since it saw it change before it
    creates a vanished Lease (a may still be writing until then); a itself, still
    renewing, creates it again at once."""
    api = FakeLeases()
    a, b = elector(api, "a"), elector(api, "b")

    async def scenario() -> float:
        await a.acquire()
        assert not await b.election.try_acquire_or_renew()
        seen = clock.now
        del api.objects[NAME]
        assert not await b.election.try_acquire_or_renew()
        await b.acquire()
        return clock.now - seen

    waited = run(scenario())
    assert FAST.lease_duration <= waited <= FAST.lease_duration + FAST.retry_period
    assert api.spec.holder_identity == "b"

    api = FakeLeases()
    a = elector(api, "a")

    async def renewed_by_its_holder() -> bool:
        await a.acquire()
        del api.objects[NAME]
        await clock.sleep(FAST.retry_period)
        assert not await a.election.try_acquire_or_renew()  # its update: 404
        return await a.election.try_acquire_or_renew()  # read: absent; created

    assert run(renewed_by_its_holder())
    assert api.spec.holder_identity == "a"
