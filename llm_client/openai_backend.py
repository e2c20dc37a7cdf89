"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, OpenRouter) through the `openai` package.

tenacity is the only retry layer (the openai client's own retries are off): 429/5xx/timeouts/connection
errors and garbage bodies are retried with exponential backoff and jitter, honouring Retry-After; a 4xx
that cannot succeed fails at once. The API key is read from the environment at each call and passed as
that request's header, so no object of ours or of the openai client holds it.

Bodies come back as bytes and are decoded once by openai_parse. `prompt_rows` (the all-at-once simulator's
call) sends a feature's prompts as one `/v1/completions` request with a list of prompts where the endpoint
takes lists (vLLM and OpenAI's legacy API do); the first such call to an endpoint finds out, and an endpoint
that refuses lists (HTTP 400/413/422, a choice count that does not match, or, on that first call only, a 5xx:
llama.cpp's Python server answers a list with HTTP 500) gets one request per prompt from then on.

An echo request asks for one generated token (base.ECHO_MAX_TOKENS), not zero: llama.cpp's server reads
max_tokens=0 as "no limit" and generates until its context is full.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from llm_client.accounting import estimate_cost
from llm_client.base import (
    ECHO_MAX_TOKENS,
    Capabilities,
    Completion,
    LLMError,
    Usage,
    check_messages,
    messages_to_prompt,
)
from llm_client.core import ClientCore
from llm_client.endpoints import EndpointPool, EndpointStats, split_urls
from llm_client.http_transport import whole_body_client
from llm_client.openai_errors import (
    about_endpoint,
    connection_refused,
    dropped_connection,
    is_retryable,
    reason,
    retry_after_s,
)
from llm_client.openai_parse import (
    ChoicesMismatch,
    Garbage,
    load_body,
    parse_chat,
    parse_completion,
    parse_prompt_rows,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

OPENAI_URL = "https://api.openai.com/v1"
MAX_GARBAGE_RETRIES = 2  # unparseable bodies rarely heal; retry a couple of times, then give up
# Nothing listening: a server restarting comes back within a few attempts, a wrong URL never does, and a run
# whose every request is refused should say so in seconds (a rerun tries endpoint failures again by itself).
MAX_REFUSED_RETRIES = 2
_KEY_PLACEHOLDER = "set-per-request"  # the real key only ever travels in one request's headers
_LIST_REFUSED_STATUS = {400, 413, 422}  # how servers that take one prompt answer a list of them
KEEPALIVE_S = 2.5


@dataclass
class _LoopState:
    """Objects bound to one event loop (httpx pools and asyncio primitives cannot cross loops)."""

    loop: asyncio.AbstractEventLoop
    pool: EndpointPool  # one openai.AsyncOpenAI per endpoint, each with its own concurrency limit
    rpm: AsyncLimiter | None
    tpm: AsyncLimiter | None
    probe: asyncio.Lock = field(default_factory=asyncio.Lock)  # one call at a time finds out about lists


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
        # Several comma-separated URLs are replicas of one model: requests spread over them (endpoints.py).
        self.base_urls = [url or OPENAI_URL for url in split_urls(base_url)]
        self.base_url = ",".join(self.base_urls)
        self._endpoint_stats: dict[str, EndpointStats] = {}
        # prompt logprobs need a vLLM-style /v1/completions with echo; OpenAI's own chat models lack it
        self.capabilities = Capabilities(chat=True, prompt_logprobs=True, top_logprobs=True)
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._wait_backoff = wait_random_exponential(multiplier=backoff_s, max=max_backoff_s)  # full jitter
        self._state: _LoopState | None = None
        self.lists_taken: bool | None = None  # whether the endpoint takes a list of prompts; None: not known yet

    def count_tokens(self, text: str) -> int:
        # No tokenizer for a remote model: token/activation lines tokenise densely, so assume 2.5 chars a token.
        return math.ceil(len(text) / 2.5)

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            # One warm connection per concurrent request. Idle connections are dropped well before the 5 s after
            # which uvicorn-based servers (vLLM, the fake server) close them; a busy client still picks up some
            # the server has just closed (it reads a response late, so its idle clock starts late), and those
            # are retried at once (_send).
            def connect(url: str) -> openai.AsyncOpenAI:
                http = whole_body_client(max_connections=self.concurrency + 4, keepalive_s=KEEPALIVE_S,
                                         timeout_s=self.timeout_s)
                return openai.AsyncOpenAI(api_key=_KEY_PLACEHOLDER, base_url=url, timeout=self.timeout_s,
                                          max_retries=0, http_client=http)

            self._state = _LoopState(
                loop=loop,
                pool=EndpointPool(self.base_urls, self.concurrency, connect, is_retryable,
                                  stats=self._endpoint_stats),
                rpm=AsyncLimiter(self.requests_per_minute, 60) if self.requests_per_minute else None,
                tpm=AsyncLimiter(self.tokens_per_minute, 60) if self.tokens_per_minute else None,
            )
        return self._state

    async def aclose(self) -> None:
        if self._state is not None and self._state.loop is asyncio.get_running_loop():
            await self._state.pool.aclose(lambda conn: conn.close())
        self._state = None
        await super().aclose()

    def credentials_problem(self) -> str | None:
        """Why no request could be authorised (no OPENAI_API_KEY for api.openai.com); None when they can, so a
        run checks it once before its first feature."""
        if not os.environ.get("OPENAI_API_KEY") and any(url.startswith(OPENAI_URL) for url in self.base_urls):
            return f"{self.spec}: OPENAI_API_KEY is not set; export it to call api.openai.com"
        return None

    def _auth_headers(self) -> dict[str, str]:
        problem = self.credentials_problem()
        if problem is not None:
            raise LLMError(problem, retryable=False, endpoint=True)
        # local servers (vLLM, llama.cpp, Ollama) accept any key
        return {"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY') or 'EMPTY'}"}

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

        async def produce() -> Completion:
            (completion, reported), attempts = await self._send("chat", body, size,
                                                                lambda raw: parse_chat(load_body(raw)))
            return self._priced(completion, reported, attempts)

        return await self._call({"endpoint": "chat", **body}, produce)

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

        async def produce() -> Completion:
            (completion, reported), attempts = await self._send(
                "completions", body, size, lambda raw: parse_completion(load_body(raw), prompt, echo=echo))
            return self._priced(completion, reported, attempts)

        return await self._call({"endpoint": "completions", **body}, produce)

    async def prompt_rows(self, prompts: Sequence[str], *, top_logprobs: int,
                          rows_at: Sequence[Sequence[int]]) -> list[Completion]:
        """See base.PromptRowsClient: the prompts not in the cache go as one request with a list of prompts
        where the endpoint takes lists, else one request each; each prompt is cached on its own."""
        if len(prompts) != len(rows_at):
            raise ValueError(f"prompt_rows: {len(prompts)} prompts but {len(rows_at)} lists of offsets")
        prompts, wanted = list(prompts), [sorted(set(r)) for r in rows_at]
        requests = [{"endpoint": "completions", "prompt": p, "max_tokens": ECHO_MAX_TOKENS, "echo": True,
                     "logprobs": top_logprobs,
                     "rows_at": w} for p, w in zip(prompts, wanted)]

        async def produce(misses: list[int]) -> tuple[list[Completion], list[Usage]]:
            return await self._rows([prompts[i] for i in misses], [wanted[i] for i in misses], top_logprobs)

        return await self._call_many(requests, produce)

    async def _rows(self, prompts: list[str], wanted: list[list[int]],
                    k: int) -> tuple[list[Completion], list[Usage]]:
        if self.lists_taken is None and len(prompts) > 1:
            async with self._loop_state().probe:  # the first list finds out; the others wait for the answer
                if self.lists_taken is None:
                    return await self._rows_list_or_each(prompts, wanted, k)
        if len(prompts) == 1 or self.lists_taken is False:
            return await self._rows_one_by_one(prompts, wanted, k)
        return await self._rows_list_or_each(prompts, wanted, k)

    async def _rows_list_or_each(self, prompts: list[str], wanted: list[list[int]],
                                 k: int) -> tuple[list[Completion], list[Usage]]:
        """One request with the list; when it is refused, one request per prompt. The first answer is
        remembered, a refusal only when the prompts then succeed alone (a list failing for its content, say
        a prompt too long, fails alone too, and then the error names that prompt's own request). While nothing
        is known, a 5xx is not retried but taken as a possible refusal: llama.cpp's server fails a list with an
        assertion (HTTP 500), and retrying it would only wait out the backoff before the same answer."""
        probing = self.lists_taken is None
        try:
            out = await self._rows_list(prompts, wanted, k, retry_server_errors=not probing)
        except LLMError as exc:
            cause = exc.__cause__
            refused = isinstance(cause, ChoicesMismatch) or (
                isinstance(cause, openai.APIStatusError)
                and (cause.status_code in _LIST_REFUSED_STATUS or (probing and cause.status_code >= 500)))
            if not refused:
                raise
            out = await self._rows_one_by_one(prompts, wanted, k)
            if self.lists_taken is None:  # an endpoint known to take lists is not demoted by one refusal
                log.info("%s does not take a list of prompts on /completions (%s); sending one prompt per "
                         "request", self.base_url, exc.reason)
                self.lists_taken = False
            return out
        self.lists_taken = True
        return out

    async def _rows_list(self, prompts: list[str], wanted: list[list[int]], k: int, *,
                         retry_server_errors: bool = True) -> tuple[list[Completion], list[Usage]]:
        body: dict[str, Any] = {"prompt": prompts, "max_tokens": ECHO_MAX_TOKENS, "echo": True, "logprobs": k}
        size = sum(self.count_tokens(p) for p in prompts)
        (completions, usage, reported), attempts = await self._send(
            "completions", body, size, lambda raw: parse_prompt_rows(raw, prompts, wanted),
            retry_server_errors=retry_server_errors)
        for completion in completions:
            self._priced(completion, reported, attempts)
        if reported:
            usage.cost_usd = estimate_cost(self.model, usage.prompt_tokens, usage.completion_tokens)
        return completions, [usage]

    async def _rows_one_by_one(self, prompts: list[str], wanted: list[list[int]],
                               k: int) -> tuple[list[Completion], list[Usage]]:
        async def one(prompt: str, rows_at: list[int]) -> Completion:
            body: dict[str, Any] = {"prompt": prompt, "max_tokens": ECHO_MAX_TOKENS, "echo": True, "logprobs": k}
            (completions, _, reported), attempts = await self._send(
                "completions", body, self.count_tokens(prompt), lambda raw: parse_prompt_rows(raw, [prompt], [rows_at]))
            return self._priced(completions[0], reported, attempts)

        completions = list(await asyncio.gather(*(one(p, w) for p, w in zip(prompts, wanted))))
        return completions, [c.usage for c in completions]

    def _priced(self, completion: Completion, usage_reported: bool, attempts: int) -> Completion:
        if usage_reported:
            u = completion.usage
            u.cost_usd = estimate_cost(self.model, u.prompt_tokens, u.completion_tokens)
        completion.attempts = attempts
        return completion

    async def _send(self, endpoint: str, body: dict, size: int, parse: Callable[[bytes], T], *,
                    retry_server_errors: bool = True) -> tuple[T, int]:
        """The parsed body of a successful request, and how many attempts it took; without
        `retry_server_errors`, a 5xx answer fails at once."""
        state = self._loop_state()
        headers = self._auth_headers()
        path = "/chat/completions" if endpoint == "chat" else "/completions"
        garbage = refused = 0
        attempt = 0

        def stop(rs: RetryCallState) -> bool:
            return (rs.attempt_number > self.max_retries or garbage > MAX_GARBAGE_RETRIES
                    or refused > MAX_REFUSED_RETRIES)

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            after = retry_after_s(exc)
            if after is not None:
                return after
            if rs.attempt_number == 1 and exc is not None and dropped_connection(exc):
                return 0.0  # a stale kept-alive connection: the next attempt takes a fresh one
            return self._wait_backoff(rs)

        def retried(exc: BaseException) -> bool:
            server_error = isinstance(exc, openai.APIStatusError) and exc.status_code >= 500
            return is_retryable(exc) and (retry_server_errors or not server_error)

        retrying = AsyncRetrying(stop=stop, wait=wait, retry=retry_if_exception(retried), reraise=True)
        try:
            async for try_ in retrying:
                with try_:
                    attempt += 1
                    self._ledger.attempt(retry=attempt > 1)
                    try:
                        parsed = parse(await self._request(state, path, body, size, headers))
                    except Garbage:
                        garbage += 1
                        raise
                    except openai.APIConnectionError as exc:
                        refused += connection_refused(exc)
                        raise
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"{self.spec} {endpoint}: {reason(exc, self.timeout_s)} (after {attempt} attempt(s))",
                           retryable=is_retryable(exc), attempts=attempt, endpoint=about_endpoint(exc)) from exc
        return parsed, attempt

    async def _request(self, state: _LoopState, path: str, body: dict, size: int, headers: dict) -> bytes:
        if state.rpm is not None:
            await state.rpm.acquire()
        if state.tpm is not None:
            await state.tpm.acquire(min(size, self.tokens_per_minute or size))
        async with state.pool.slot() as endpoint:
            # The openai package's documented raw route: its HTTP, errors and timeouts, without the
            # per-request TypedDict transform and pydantic parsing that dominate CPU at volume; the body
            # comes back as bytes and is decoded once, by openai_parse.
            return await endpoint.conn.post(path, cast_to=bytes, body={"model": self.model, **body},
                                            options={"headers": headers})

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Requests, failures, rests and mean latency per endpoint, in the order the endpoints were given."""
        return [self._endpoint_stats[url].as_dict() for url in self.base_urls if url in self._endpoint_stats]
