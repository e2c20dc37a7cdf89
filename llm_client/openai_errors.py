"""How a failed request to an OpenAI-compatible endpoint is read: whether to retry it (and after how long), whether
the endpoint rather than the request is at fault, and the one-line reason a user sees."""

from __future__ import annotations

from collections.abc import Callable

import openai

from llm_client.openai_parse import Garbage

MAX_RETRY_AFTER_S = 60.0  # a server asking for longer is waited on at most this long per attempt
ENDPOINT_STATUS = {401, 403, 404}  # bad key, no access, no such model (or path): every request fails alike
RETRY_STATUS = {408, 409, 429}  # plus every 5xx


def retry_after_s(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return min(max(float(value) * scale, 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            pass  # an HTTP date: fall back to our own backoff
    return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (Garbage, openai.APIConnectionError)):  # APITimeoutError is a connection error
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


# A request sent on a kept-alive connection that the server closed meanwhile (uvicorn-based servers close
# idle ones after 5 s, and a busy client may pick one up just then) fails before the server sees it: safe
# to send again at once. The transports name it differently; the openai package calls it a timeout.
_DROPPED = {"ServerDisconnectedError", "ClientConnectionResetError", "RemoteProtocolError"}


def _in_chain(exc: BaseException, found: Callable[[BaseException], bool]) -> bool:
    """Whether `exc` or one of the errors it came from (the transports wrap each other's) is `found`."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if found(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def dropped_connection(exc: BaseException) -> bool:
    return _in_chain(exc, lambda e: isinstance(e, (ConnectionResetError, BrokenPipeError))
                     or type(e).__name__ in _DROPPED)


def connection_refused(exc: BaseException) -> bool:
    return _in_chain(exc, lambda e: isinstance(e, ConnectionRefusedError))


def about_endpoint(exc: BaseException) -> bool:
    """Whether the endpoint, not this request, is at fault: every other request would fail alike."""
    if isinstance(exc, openai.APIStatusError) and exc.status_code in ENDPOINT_STATUS:
        return True
    return isinstance(exc, openai.APIConnectionError | openai.APIStatusError) and is_retryable(exc)


def reason(exc: BaseException, timeout_s: float) -> str:
    if dropped_connection(exc):
        return "the server closed the connection"
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out after {timeout_s:g}s"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc}"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {str(exc.message)[:300]}"
    if isinstance(exc, Garbage):
        return f"unusable response: {exc}"
    return f"{type(exc).__name__}: {exc}"
