"""What every backend shares around a call: the response cache and the ledger of calls, tokens and cost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from llm_client.accounting import Ledger
from llm_client.base import Completion, LLMError, Usage
from llm_client.cache import ResponseCache, request_key


class ClientCore:
    """Base of the backends: `_call` serves a request from the cache or `produce`s it, and books it."""

    backend: str  # "openai" | "local"
    model: str

    def __init__(self, cache_path: str | None) -> None:
        self._ledger = Ledger()
        self._cache = ResponseCache(cache_path) if cache_path else None

    @property
    def spec(self) -> str:
        return f"{self.backend}:{self.model}"

    def stats(self) -> dict:
        return self._ledger.snapshot()

    async def aclose(self) -> None:
        """Release connections and the cache file; the client is not used after this."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    async def _call(self, request: dict, produce: Callable[[], Awaitable[Completion]]) -> Completion:
        self._ledger.call()
        key = request_key(self.backend, self.model, request) if self._cache is not None else ""
        if self._cache is not None and (hit := self._cache.get(key)) is not None:
            self._ledger.cache_hit()
            return hit
        try:
            completion = await produce()
        except LLMError:
            self._ledger.failure()
            raise
        self._ledger.usage(completion.usage)
        if self._cache is not None:
            self._cache.put(key, self.backend, self.model, completion)
        return completion

    async def _call_many(self, requests: Sequence[dict],
                         produce: Callable[[list[int]], Awaitable[tuple[list[Completion], list[Usage]]]],
                         ) -> list[Completion]:
        """Several calls at once, each cached under its own request (so one sent alone and one sent in a
        batch share an entry): the hits are read in one query, `produce(misses)` answers the rest (their
        completions in order, and the usage of each request it paid for), and they are booked as one call
        each."""
        n = len(requests)
        self._ledger.call(n)
        keys = [request_key(self.backend, self.model, r) for r in requests] if self._cache is not None else []
        hits = self._cache.get_many(keys) if self._cache is not None else {}
        out: list[Completion | None] = [hits.get(k) for k in keys] if keys else [None] * n
        misses = [i for i, c in enumerate(out) if c is None]
        if n - len(misses):
            self._ledger.cache_hit(n - len(misses))
        if misses:
            try:
                fresh, paid = await produce(misses)
            except LLMError:
                self._ledger.failure(len(misses))
                raise
            for usage in paid:
                self._ledger.usage(usage)
            for i, completion in zip(misses, fresh, strict=True):
                out[i] = completion
            if self._cache is not None:
                self._cache.put_many([(keys[i], c) for i, c in zip(misses, fresh)], self.backend, self.model)
        return [c for c in out if c is not None]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"
