"""Metric providers behind one small Protocol (query -> value; health), like Flagger's
``RunQuery``/``IsOnline``. Unlike Flagger's factory, an unknown provider is an error,
never a silent fallback (the handler reports it as an ``Invalid`` condition)."""

from __future__ import annotations

import math
import ssl
from typing import Any, Protocol

import aiohttp

from ferryman import errors
from ferryman.analysis.evaluate import BucketsResult, QueryResult


class MetricsProvider(Protocol):
    async def query(self, promql: str) -> QueryResult: ...

    async def query_buckets(self, promql: str) -> BucketsResult: ...

    async def healthy(self) -> bool: ...


class Prometheus:
    """Instant queries against Prometheus's HTTP API over one shared session.

    Credentials (a bearer token, or basic auth) belong to a provider the platform team
    configured; the handler never builds one with credentials for an inline address.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        address: str,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.session = session
        self.address = address.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.headers: dict[str, str] = {}
        self.auth = aiohttp.BasicAuth(*basic) if basic else None
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True

    async def _fetch(self, promql: str) -> dict[str, Any] | str:
        """The body of a successful ``/api/v1/query`` answer, or the error as text."""
        url = f"{self.address}/api/v1/query"
        try:
            async with self.session.get(
                url,
                params={"query": promql},
                headers=self.headers,
                auth=self.auth,
                timeout=self.timeout,
                ssl=self.ssl,
            ) as resp:
                body = await resp.json(content_type=None)
                if not isinstance(body, dict):
                    return (
                        f"HTTP {resp.status}: not a Prometheus API response ({type(body).__name__})"
                    )
                if resp.status != 200 or body.get("status") != "success":
                    detail = body.get("error") if isinstance(body, dict) else None
                    return f"HTTP {resp.status}: {detail or 'query failed'}"
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return f"Prometheus at {self.address} unreachable: {errors.describe(e)}"

    async def query(self, promql: str) -> QueryResult:
        body = await self._fetch(promql)
        if isinstance(body, str):
            return QueryResult(error=body)
        try:
            return _result(body)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            # A shape we do not read (a native histogram sample, a null value): an Error
            # measurement that names it, never an exception that stops the reconcile.
            return QueryResult(error=f"unreadable Prometheus result: {errors.describe(e)}")

    async def query_buckets(self, promql: str) -> BucketsResult:
        """A histogram's buckets: a vector with one series per ``le`` label."""
        body = await self._fetch(promql)
        if isinstance(body, str):
            return BucketsResult(error=body)
        try:
            return _buckets(body)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            return BucketsResult(error=f"unreadable Prometheus result: {errors.describe(e)}")

    async def healthy(self) -> bool:
        try:
            async with self.session.get(
                f"{self.address}/-/ready",
                headers=self.headers,
                auth=self.auth,
                timeout=self.timeout,
                ssl=self.ssl,
            ) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


def _result(body: dict[str, Any]) -> QueryResult:
    """The value of a successful ``/api/v1/query`` response (at most one series)."""
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return QueryResult(value=_number(result[1]))
    if kind == "vector" and isinstance(result, list):
        if not result:
            return QueryResult(value=None)
        if len(result) > 1:
            return QueryResult(
                error=f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))"
            )
        return QueryResult(value=_number(result[0]["value"][1]))
    return QueryResult(error=f"unsupported result type {kind!r}")


def _buckets(body: dict[str, Any]) -> BucketsResult:
    """Cumulative counts by ``le`` from a vector answer, e.g. of
    ``sum by (le) (increase(model_prediction_bucket{version="v2"}[5m]))``."""
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind != "vector" or not isinstance(result, list):
        return BucketsResult(error=f"histogram query must return a vector, not {kind!r}")
    buckets: dict[str, float] = {}
    for series in result:
        labels = series.get("metric") or {}
        if set(labels) != {"le"}:
            return BucketsResult(
                error=f"histogram query returned a series labelled {labels}; "
                "aggregate it to one series per le, e.g. sum by (le) (...)"
            )
        if labels["le"] in buckets:
            return BucketsResult(error=f"histogram query returned le={labels['le']} twice")
        buckets[labels["le"]] = _number(series["value"][1])
    return BucketsResult(buckets=buckets)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
