"""Work over every item of a batch with at most a fixed number of coroutines at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")


async def bounded(count: int, limit: int, work: Callable[[int], Awaitable[T]]) -> list[T]:
    """`work(0)` .. `work(count - 1)`, at most `limit` running at once, taken in order; their results in that
    order. `limit` coroutines take the next position in turn rather than a task per position waiting on a
    semaphore: one layer of a wide SAE has 100k+ features, and a task each would hold that many tasks in memory
    and make the event loop schedule every one of them. The first exception is raised, as gather raises it."""
    results: list[T | None] = [None] * count
    positions = iter(range(count))  # shared: each coroutine takes the next one when it is free

    async def worker() -> None:
        for position in positions:
            results[position] = await work(position)

    await asyncio.gather(*(worker() for _ in range(min(limit, count))))
    return cast(list[T], results)  # every position was filled
