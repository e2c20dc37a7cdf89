"""Run one call on a simulator or LLM client inside asyncio.run and close its connections before the
loop ends (an unclosed aiohttp session warns when its loop is gone)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


async def simulate_and_close(sim: Any, *args: Any) -> Any:
    try:
        return await sim.simulate(*args)
    finally:
        await sim.aclose()


async def score_and_close(scorer: Callable[..., Awaitable[Any]], client: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await scorer(client, *args, **kwargs)
    finally:
        await client.aclose()
