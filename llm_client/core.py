"""What every backend shares around a call: the response cache and the ledger of calls, tokens and cost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from llm_client.accounting import Ledger
from llm_client.base import Completion, LLMError
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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"
