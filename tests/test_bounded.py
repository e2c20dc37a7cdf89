"""bounded: every position once, in order, never more than the limit at once, and the first failure raised."""

from __future__ import annotations

import asyncio

import pytest

from autointerp.runtime.bounded import bounded


def test_every_position_once_in_order_and_at_most_limit_at_once():
    running, peak, started = 0, 0, []

    async def work(position: int) -> int:
        nonlocal running, peak
        started.append(position)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (position % 3))  # out-of-order finishes
        running -= 1
        return position * 10

    assert asyncio.run(bounded(50, 4, work)) == [p * 10 for p in range(50)]
    assert started == list(range(50)) and peak == 4
    assert asyncio.run(bounded(0, 4, work)) == []
    assert asyncio.run(bounded(2, 100, work)) == [0, 10]


def test_the_first_failure_is_raised():
    async def work(position: int) -> int:
        if position == 7:
            raise LookupError("feature 7: its records were not read")
        await asyncio.sleep(0)
        return position

    with pytest.raises(LookupError, match="feature 7"):
        asyncio.run(bounded(20, 3, work))
