"""Many OpenAI-compatible endpoints behind one client: each request goes to the endpoint with the fewest
requests in flight, each endpoint has its own concurrency limit, and an endpoint that keeps failing is
rested for a while (the others carry the load; when every endpoint rests, the one back first is used).

The pool knows nothing about HTTP: the backend hands it one connection object per endpoint (`make_conn`)
and says which errors are the endpoint's fault (`blames_endpoint`). Stats per endpoint (requests,
failures, latency, rests) feed the run summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from llm_client.base import SpecError

FAILURES_BEFORE_REST = 3  # consecutive failures that send an endpoint to rest
REST_S = 30.0


def split_urls(base_url: str | None) -> list[str | None]:
    """`a,b` (as OPENAI_BASE_URL or joined --base-url values hold several) -> [a, b]; None -> [None]."""
    if base_url is None:
        return [None]
    urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
    if not urls:
        raise SpecError(f"base URL {base_url!r} names no endpoint; give http(s)://host:port/v1 (comma-separated "
                        "for several)")
    return list(dict.fromkeys(urls))  # one endpoint named twice is still one endpoint


@dataclass
class EndpointStats:
    url: str
    requests: int = 0
    failures: int = 0
    latency_s: float = 0.0  # summed over finished requests
    rests: int = 0

    def as_dict(self) -> dict[str, Any]:
        done = max(self.requests, 1)
        return {"url": self.url, "requests": self.requests, "failures": self.failures, "rests": self.rests,
                "mean_latency_ms": round(1000 * self.latency_s / done, 1) if self.requests else None}


@dataclass
class Endpoint:
    url: str
    conn: Any  # whatever the backend sends requests with (an openai.AsyncOpenAI)
    limit: int
    stats: EndpointStats
    in_flight: int = 0
    failures_in_row: int = 0
    rest_until: float = 0.0


@dataclass
class EndpointPool:
    """Endpoints of one event loop. `slot()` waits for a free endpoint and books the request's outcome."""

    urls: list[str]
    limit: int  # requests in flight per endpoint
    make_conn: Callable[[str], Any]
    blames_endpoint: Callable[[BaseException], bool]
    stats: dict[str, EndpointStats] = field(default_factory=dict)  # kept across loops (a client may outlive one)
    failures_before_rest: int = FAILURES_BEFORE_REST
    rest_s: float = REST_S

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"per-endpoint concurrency must be >= 1, got {self.limit}")
        self.endpoints = [Endpoint(url, self.make_conn(url), self.limit, self.stats.setdefault(url, EndpointStats(url)))
                          for url in self.urls]
        self._changed = asyncio.Condition()

    def _pick(self) -> Endpoint | None:
        now = time.monotonic()
        open_ = [e for e in self.endpoints if e.in_flight < e.limit]
        if not open_:
            return None
        awake = [e for e in open_ if e.rest_until <= now]
        if awake:
            return min(awake, key=lambda e: e.in_flight)
        if any(e.rest_until <= now for e in self.endpoints):
            return None  # an awake endpoint is only busy: wait for it rather than wake a failing one
        return min(open_, key=lambda e: e.rest_until)  # all resting: the one back first tries again

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Endpoint]:
        async with self._changed:
            endpoint = self._pick()
            while endpoint is None:
                try:
                    await self._changed.wait()
                except asyncio.CancelledError:
                    self._changed.notify(1)  # a wake-up meant for this waiter goes to the next one
                    raise
                endpoint = self._pick()
            endpoint.in_flight += 1
        started = time.monotonic()
        try:
            yield endpoint
        except BaseException as exc:
            self._book(endpoint, started, exc)
            raise
        else:
            self._book(endpoint, started, None)
        finally:
            async with self._changed:
                endpoint.in_flight -= 1
                # One slot is free, and every waiter wants the same thing (any endpoint _pick allows): wake one.
                # Waking all of them made each release cost a wake-up per waiting request.
                self._changed.notify(1)

    def _book(self, endpoint: Endpoint, started: float, exc: BaseException | None) -> None:
        stats = endpoint.stats
        stats.requests += 1
        stats.latency_s += time.monotonic() - started
        if exc is None or not self.blames_endpoint(exc):
            endpoint.failures_in_row = 0
            return
        stats.failures += 1
        endpoint.failures_in_row += 1
        if endpoint.failures_in_row >= self.failures_before_rest and len(self.endpoints) > 1:
            endpoint.rest_until = time.monotonic() + self.rest_s
            endpoint.failures_in_row = 0
            stats.rests += 1

    async def aclose(self, close: Callable[[Any], Any]) -> None:
        for endpoint in self.endpoints:
            await close(endpoint.conn)


def merge_endpoint_stats(many: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Sum several clients' (or workers') per-endpoint stats by URL."""
    out: dict[str, EndpointStats] = {}
    for stats in many:
        for one in stats:
            total = out.setdefault(one["url"], EndpointStats(one["url"]))
            total.requests += one["requests"]
            total.failures += one["failures"]
            total.rests += one["rests"]
            total.latency_s += (one["mean_latency_ms"] or 0.0) * one["requests"] / 1000
    return [s.as_dict() for s in out.values()]


def endpoint_stats_of(*clients: object) -> list[dict[str, Any]]:
    """Per-endpoint stats of the clients that have endpoints (OpenAI-compatible ones), merged by URL."""
    return merge_endpoint_stats([c.endpoint_stats() for c in clients if hasattr(c, "endpoint_stats")])
