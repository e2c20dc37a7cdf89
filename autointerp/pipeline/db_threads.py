"""Database work off the event loop, so the loop only ever waits on the network: reads run on a small
pool of threads (each call opens its own session), writes on one thread of their own (SQLite has one
writer at a time; a single writing thread keeps saves from queueing on its lock, and each call is still
one transaction, so a feature is stored whole or not at all)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

READ_THREADS = 4


class DatabaseThreads:
    def __init__(self) -> None:
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="db-read")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="db-write")

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reads, partial(fn, *args))

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writes, partial(fn, *args))

    def __enter__(self) -> DatabaseThreads:
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        # A save already handed to the writer finishes (it is one transaction); nothing new starts.
        self._reads.shutdown(wait=True, cancel_futures=True)
        self._writes.shutdown(wait=True)
