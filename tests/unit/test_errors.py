"""Every error message names its cause, even for exceptions whose text is empty."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ferryman import errors
from ferryman.analysis.provider import Prometheus
from ferryman.storage import failure, fetch


def test_describe_names_the_type_when_the_text_is_empty() -> None:
    assert str(TimeoutError()) == ""  # why describe exists
    assert errors.describe(TimeoutError()) == "TimeoutError"
    assert errors.describe(aiohttp.ServerTimeoutError()) == "ServerTimeoutError"
    assert errors.describe(ValueError("  ")) == "ValueError"
    assert errors.describe(ConnectionRefusedError(111, "Connection refused")) == (
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )


class RaisingSession:
    """An aiohttp session whose every request fails with ``exc`` (no I/O)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "named"),
    [
        (TimeoutError(), "TimeoutError"),
        (aiohttp.ServerTimeoutError(), "ServerTimeoutError"),
        (
            aiohttp.ClientConnectionError("connection reset"),
            "ClientConnectionError: connection reset",
        ),
    ],
)
def test_a_prometheus_timeout_is_reported_with_its_cause(exc: BaseException, named: str) -> None:
    prom = Prometheus(RaisingSession(exc), "http://127.0.0.1:9")  # type: ignore[arg-type]
    result = asyncio.run(prom.query("up"))
    assert result.error == f"Prometheus at http://127.0.0.1:9 unreachable: {named}"


def test_a_storage_download_timeout_is_reported_with_its_cause(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def timeout(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError

    monkeypatch.setattr(urllib.request, "urlopen", timeout)
    with pytest.raises(failure.StorageError) as caught:
        fetch.fetch("https://127.0.0.1:9/m.onnx", "sha256:" + "a" * 64, tmp_path, fetch.Options())
    assert caught.value.reason == failure.Reason.UNREACHABLE
    assert str(caught.value) == "cannot download https://127.0.0.1:9/m.onnx: TimeoutError"


class AnsweringSession:
    """An aiohttp session whose every request answers HTTP 200 with ``body`` (no I/O)."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def get(self, *args: Any, **kwargs: Any) -> Any:
        body = self.body

        class Response:
            status = 200

            async def json(self, content_type: str | None = None) -> Any:
                return body

            async def __aenter__(self) -> Response:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

        return Response()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (None, "not a Prometheus API response (NoneType)"),
        (["x"], "not a Prometheus API response (list)"),
        (  # a native-histogram sample has "histogram", not "value"
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "histogram": [1, {}]}]},
            },
            "unreadable Prometheus result: KeyError: 'value'",
        ),
        (
            {"status": "success", "data": {"resultType": "scalar", "result": [1, None]}},
            "unreadable Prometheus result: TypeError",
        ),
    ],
)
def test_an_odd_prometheus_answer_is_an_error_measurement_not_an_exception(
    body: Any, named: str
) -> None:
    prom = Prometheus(AnsweringSession(body), "http://127.0.0.1:9")  # type: ignore[arg-type]
    result = asyncio.run(prom.query("up"))
    assert result.value is None and result.error is not None and named in result.error
