"""Token usage, estimated cost, and per-client call statistics."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from llm_client.base import Usage

# USD per 1M tokens (input, output), OpenAI list prices. Dated snapshots match by prefix
# ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini"). A model not here has an unknown cost (None).
PRICES_PER_M: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}


def price_for(model: str) -> tuple[float, float] | None:
    """The longest price-table name that `model` equals or extends with '-'; None when unknown."""
    name = model.split("/")[-1]  # "openai/gpt-4o-mini" as OpenRouter spells it
    for known in sorted(PRICES_PER_M, key=len, reverse=True):
        if name == known or name.startswith(known + "-"):
            return PRICES_PER_M[known]
    return None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = price_for(model)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


@dataclass
class _Counters:
    calls: int = 0  # chat()/complete() calls; a call with several prompts counts one per prompt
    requests: int = 0  # attempts sent to the backend (calls less cache hits, plus retries; fewer with lists)
    retries: int = 0
    failures: int = 0  # calls that ended in LLMError
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced_calls: int = 0


class Ledger:
    """Thread-safe counters for one client (the local backend works in threads)."""

    def __init__(self) -> None:
        self._c = _Counters()
        self._lock = threading.Lock()

    def call(self, n: int = 1) -> None:
        with self._lock:
            self._c.calls += n

    def attempt(self, *, retry: bool) -> None:
        with self._lock:
            self._c.requests += 1
            self._c.retries += int(retry)

    def failure(self, n: int = 1) -> None:
        with self._lock:
            self._c.failures += n

    def cache_hit(self, n: int = 1) -> None:
        with self._lock:
            self._c.cache_hits += n

    def usage(self, usage: Usage) -> None:
        """Tokens and cost actually paid for (cache hits are not passed here)."""
        with self._lock:
            self._c.prompt_tokens += usage.prompt_tokens
            self._c.completion_tokens += usage.completion_tokens
            if usage.cost_usd is not None:
                self._c.cost_usd += usage.cost_usd
                self._c.priced_calls += 1

    def snapshot(self) -> dict:
        with self._lock:
            c = self._c
            return {
                "calls": c.calls,
                "requests": c.requests,
                "retries": c.retries,
                "failures": c.failures,
                "cache_hits": c.cache_hits,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                # None when no call had a known price, so an unpriced model never reads as free
                "cost_usd": c.cost_usd if c.priced_calls else None,
            }
