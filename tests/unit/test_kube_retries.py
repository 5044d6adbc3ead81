"""Transient API failures are retried inside ``Kube`` (a dropped connection costs a second,
not a failed reconcile and its 5 s backoff): a connection closed without an answer and an
HTTP 429 are retried, a refusal is not. Against a raw HTTP server on 127.0.0.1 that
scripts each connection's fate, so the real aiohttp client meets the real failure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from kubernetes.aio import client

from ferryman.kube.client import Kube, Rejected, transient

PATH = "/apis/ferryman.dev/v1alpha1/namespaces/ns/rollouts/fraud/status"
OK = json.dumps({"kind": "Rollout", "metadata": {"name": "fraud"}})


class Scripted:
    """Answers request n with ``script[n]``: "drop" closes the connection without an
    answer (after reading the request: a reset mid-write), "cut" closes it halfway
    through the answer's body (a response lost after the write), an int answers that
    status."""

    def __init__(self, script: list[str | int]) -> None:
        self.script, self.seen = script, 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await reader.readexactly(length)
                fate = self.script[min(self.seen, len(self.script) - 1)]
                self.seen += 1
                if fate == "drop":
                    writer.close()
                    return
                if fate == "cut":
                    writer.write(
                        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(OK)}\r\n\r\n{OK[:5]}".encode()
                    )
                    await writer.drain()
                    writer.close()
                    return
                body = OK if fate == 200 else json.dumps({"kind": "Status", "code": fate})
                writer.write(
                    f"HTTP/1.1 {fate} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def _against(script: list[str | int], call: Callable[[Kube], Awaitable[None]]) -> int:
    server = Scripted(script)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    kube = Kube(client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}")))
    kube.retry_delays = (0.01, 0.01, 0.01, 0.01)
    try:
        await call(kube)
    finally:
        await kube.close()
        srv.close()
        await srv.wait_closed()
    return server.seen


def _patch(kube: Kube) -> Awaitable[None]:
    return kube.patch_status("rollouts", "ns", "fraud", {"phase": "Healthy"})


def test_a_write_whose_connection_drops_is_sent_again() -> None:
    assert asyncio.run(_against(["drop", 200], _patch)) == 2


def test_a_write_whose_answer_is_cut_short_is_sent_again() -> None:
    assert asyncio.run(_against(["cut", 200], _patch)) == 2


def test_too_many_requests_is_retried() -> None:
    assert asyncio.run(_against([429, 429, 200], _patch)) == 3


def test_a_persistent_drop_gives_up_after_five_attempts() -> None:
    with pytest.raises(aiohttp.ClientConnectionError):
        asyncio.run(_against(["drop"], _patch))


def test_a_refusal_is_not_retried() -> None:
    seen: list[int] = []

    async def refused(kube: Kube) -> None:
        with pytest.raises(Rejected):
            await _patch(kube)

    seen.append(asyncio.run(_against([422, 200], refused)))
    assert seen == [1]


def test_what_counts_as_transient() -> None:
    assert transient(aiohttp.ServerDisconnectedError())
    assert transient(aiohttp.ClientPayloadError("cut"))
    assert transient(TimeoutError())
    assert transient(client.ApiException(status=429))
    assert not transient(client.ApiException(status=500))
    assert not transient(ValueError("bad"))
