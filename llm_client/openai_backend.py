"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, OpenRouter) through the `openai` package.

tenacity is the only retry layer (the openai client's own retries are off): 429/5xx/timeouts/connection
errors and garbage bodies are retried with exponential backoff and jitter, honouring Retry-After; a 4xx
that cannot succeed fails at once. The API key is read from the environment at each call and passed as
that request's header, so no object of ours or of the openai client holds it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import openai
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from llm_client.accounting import estimate_cost
from llm_client.base import Capabilities, Completion, LLMError, check_messages, messages_to_prompt
from llm_client.core import ClientCore
from llm_client.openai_parse import Garbage, parse_chat, parse_completion

OPENAI_URL = "https://api.openai.com/v1"
MAX_RETRY_AFTER_S = 60.0  # a server asking for longer is waited on at most this long per attempt
MAX_GARBAGE_RETRIES = 2  # unparseable bodies rarely heal; retry a couple of times, then give up
_RETRY_STATUS = {408, 409, 429}  # plus every 5xx
_KEY_PLACEHOLDER = "set-per-request"  # the real key only ever travels in one request's headers


def _retry_after_s(exc: BaseException | None) -> float | None:
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


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (Garbage, openai.APIConnectionError)):  # APITimeoutError is a connection error
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    return False


def _reason(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out after {timeout_s:g}s"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc}"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {str(exc.message)[:300]}"
    if isinstance(exc, Garbage):
        return f"unusable response: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _http_client_cls() -> type:
    """aiohttp's transport when installed (about half the CPU per request of httpx's pool), else httpx."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return openai.DefaultAsyncHttpxClient
    return openai.DefaultAioHttpClient


@dataclass
class _LoopState:
    """Objects bound to one event loop (httpx pools and asyncio primitives cannot cross loops)."""

    loop: asyncio.AbstractEventLoop
    client: openai.AsyncOpenAI
    semaphore: asyncio.Semaphore
    rpm: AsyncLimiter | None
    tpm: AsyncLimiter | None


class OpenAIClient(ClientCore):
    backend = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, concurrency: int = 8,
                 requests_per_minute: int | None = None, tokens_per_minute: int | None = None,
                 timeout_s: float = 60.0, max_retries: int = 6, cache_path: str | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        super().__init__(cache_path)
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.model = model
        # The caller resolves the endpoint (autointerp reads OPENAI_BASE_URL into its settings); None is OpenAI's.
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        # prompt logprobs need a vLLM-style /v1/completions with echo; OpenAI's own chat models lack it
        self.capabilities = Capabilities(chat=True, prompt_logprobs=True, top_logprobs=True)
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._wait_backoff = wait_random_exponential(multiplier=backoff_s, max=max_backoff_s)  # full jitter
        self._state: _LoopState | None = None

    def count_tokens(self, text: str) -> int:
        # No tokenizer for a remote model: token/activation lines tokenise densely, so assume 2.5 chars a token.
        return math.ceil(len(text) / 2.5)

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            # Keep one warm connection per concurrent request (the default keeps 100); the Limits class comes
            # from the openai package's own httpx flavour, whichever it is.
            limits_cls = type(openai._constants.DEFAULT_CONNECTION_LIMITS)
            connections = self.concurrency + 4
            limits = limits_cls(max_connections=connections, max_keepalive_connections=connections)
            http = _http_client_cls()(limits=limits)
            self._state = _LoopState(
                loop=loop,
                client=openai.AsyncOpenAI(api_key=_KEY_PLACEHOLDER, base_url=self.base_url, timeout=self.timeout_s,
                                          max_retries=0, http_client=http),
                semaphore=asyncio.Semaphore(self.concurrency),
                rpm=AsyncLimiter(self.requests_per_minute, 60) if self.requests_per_minute else None,
                tpm=AsyncLimiter(self.tokens_per_minute, 60) if self.tokens_per_minute else None,
            )
        return self._state

    async def aclose(self) -> None:
        if self._state is not None and self._state.loop is asyncio.get_running_loop():
            await self._state.client.close()
        self._state = None
        await super().aclose()

    def _auth_headers(self) -> dict[str, str]:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url.startswith(OPENAI_URL):
                raise LLMError("OPENAI_API_KEY is not set; export it to call api.openai.com", retryable=False)
            key = "EMPTY"  # local servers (vLLM, llama.cpp, Ollama) accept any key
        return {"Authorization": f"Bearer {key}"}

    async def chat(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0,
                   top_logprobs: int | None = None, stop: list[str] | None = None,
                   seed: int | None = None) -> Completion:
        check_messages(messages)
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if top_logprobs:
            body.update(logprobs=True, top_logprobs=top_logprobs)
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        size = self.count_tokens(messages_to_prompt(messages)) + max_tokens
        return await self._call({"endpoint": "chat", **body},
                                lambda: self._send("chat", body, size, parse_chat))

    async def complete(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0,
                       echo: bool = False, logprobs: int | None = None, stop: list[str] | None = None,
                       seed: int | None = None) -> Completion:
        body: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature}
        if echo:
            body["echo"] = True
        if logprobs is not None:
            body["logprobs"] = logprobs
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        size = self.count_tokens(prompt) + max_tokens
        return await self._call({"endpoint": "completions", **body},
                                lambda: self._send("completions", body, size,
                                                   lambda r: parse_completion(r, prompt, echo=echo)))

    async def _send(self, endpoint: str, body: dict, size: int, parse: Any) -> Completion:
        state = self._loop_state()
        headers = self._auth_headers()
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        garbage = 0
        attempt = 0

        def stop(rs: RetryCallState) -> bool:
            return rs.attempt_number > self.max_retries or garbage > MAX_GARBAGE_RETRIES

        def wait(rs: RetryCallState) -> float:
            after = _retry_after_s(rs.outcome.exception()) if rs.outcome else None
            return after if after is not None else self._wait_backoff(rs)

        retrying = AsyncRetrying(stop=stop, wait=wait, retry=retry_if_exception(_is_retryable), reraise=True)
        try:
            async for try_ in retrying:
                with try_:
                    attempt += 1
                    self._ledger.attempt(retry=attempt > 1)
                    try:
                        parsed = await self._request(state, path, body, size, headers, parse)
                    except Garbage:
                        garbage += 1
                        raise
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"{self.spec} {endpoint}: {_reason(exc, self.timeout_s)} (after {attempt} attempt(s))",
                           retryable=_is_retryable(exc), attempts=attempt) from exc
        completion, usage_reported = parsed
        if usage_reported:
            u = completion.usage
            u.cost_usd = estimate_cost(self.model, u.prompt_tokens, u.completion_tokens)
        completion.attempts = attempt
        return completion

    async def _request(self, state: _LoopState, path: str, body: dict, size: int, headers: dict,
                       parse: Any) -> tuple[Completion, bool]:
        if state.rpm is not None:
            await state.rpm.acquire()
        if state.tpm is not None:
            await state.tpm.acquire(min(size, self.tokens_per_minute or size))
        async with state.semaphore:
            try:
                # The openai package's documented raw route: its HTTP, errors and timeouts, without the
                # per-request TypedDict transform and pydantic parsing that dominate CPU at volume.
                response = await state.client.post(path, cast_to=object, body={"model": self.model, **body},
                                                   options={"headers": headers})
            except json.JSONDecodeError as exc:
                raise Garbage(f"body is not valid JSON ({exc})") from None
        return parse(response)
