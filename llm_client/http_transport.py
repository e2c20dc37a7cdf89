"""The openai package's HTTP over aiohttp, reading each response body in one piece.

The openai package's own aiohttp transport streams every body to it in 16 KB pieces through three layers of
async generators, and aiohttp pauses the socket each time 64 KB are buffered. An echoed simulation body is
about 1.7 MB, so that costs several ms of the client's CPU per request: the most of any step after parsing
(benchmarks/pipeline_throughput.py). This transport hands aiohttp's whole body (read with a buffer that holds
it) to the openai package, which reads non-streaming bodies whole anyway. Every call here is non-streaming.

It speaks the transport interface of whichever httpx flavour the installed openai package is built on
(httpx, or httpx2 in recent releases), and maps aiohttp's errors onto that flavour's, so the openai
package still turns them into APITimeoutError / APIConnectionError; the aiohttp error stays the cause.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import aiohttp
import openai

READ_BUFFER = 1 << 22  # bytes aiohttp buffers before pausing the socket: more than an echoed body


def _httpx_flavour() -> ModuleType:
    """The httpx module the openai package's clients are built on."""
    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    return importlib.import_module(base.__module__.split(".")[0])


httpx: Any = _httpx_flavour()
# Headers aiohttp has already acted on: the body handed on is the decoded, complete one.
_DROPPED_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}


class WholeBodyTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_s: float) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use, inside the event loop that uses it
            # As the openai package's own clients: certifi's certificates, and proxies from the environment.
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_s,
                                             ssl=httpx.create_ssl_context())
            self._session = aiohttp.ClientSession(connector=connector, read_bufsize=READ_BUFFER, trust_env=True)
        return self._session

    async def handle_async_request(self, request: Any) -> Any:
        timeout = request.extensions.get("timeout", {})
        try:
            async with self._client().request(
                request.method, str(request.url), headers=request.headers.multi_items(), data=request.content or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(sock_connect=timeout.get("connect"), sock_read=timeout.get("read"),
                                              connect=timeout.get("pool")),
            ) as response:
                body = await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:  # the server closed the connection, a malformed response, ...
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        headers = [(k, v) for k, v in response.raw_headers if k.decode("latin-1").lower() not in _DROPPED_HEADERS]
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(response.status, headers=headers, content=body, request=request, extensions=extensions)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def whole_body_client(*, max_connections: int, keepalive_s: float, timeout_s: float) -> Any:
    """An http_client for openai.AsyncOpenAI that reads bodies whole over aiohttp."""
    return openai.DefaultAsyncHttpxClient(
        transport=WholeBodyTransport(max_connections=max_connections, keepalive_s=keepalive_s), timeout=timeout_s)
