"""Database work off the event loop, so the loop only ever waits on the network: reads run on a small
pool of threads (each call opens its own session), writes on one thread of their own (SQLite has one
writer at a time; a single writing thread keeps saves from queueing on its lock, and each call is still
one transaction, so a feature is stored whole or not at all)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")

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


class ChunkedReads(Generic[K, T]):
    """One read per key, for coroutines that each need one, done a chunk of keys at a time on the read threads
    (`read(chunk)` returns key -> value; a key it leaves out gets None): a few queries per chunk instead of a
    few per key. The next chunk is read as soon as one of this chunk's keys is asked for, so a coroutine rarely
    waits; each value is handed out once, so a chunk's memory goes as its values are taken."""

    def __init__(self, store: DatabaseThreads, read: Callable[[Sequence[K]], dict[K, T]], keys: Sequence[K],
                 chunk: int) -> None:
        self._store, self._read, self._keys, self._chunk = store, read, keys, chunk
        self._reads: dict[int, asyncio.Future[dict[K, T]]] = {}

    def _start(self, index: int) -> asyncio.Future[dict[K, T]]:
        if index not in self._reads:
            keys = self._keys[index * self._chunk:(index + 1) * self._chunk]
            self._reads[index] = asyncio.ensure_future(self._store.read(self._read, keys))
        return self._reads[index]

    async def get(self, position: int) -> T | None:
        """The value of the key at `position` of the keys."""
        index = position // self._chunk
        read = self._start(index)
        if (index + 1) * self._chunk < len(self._keys):
            self._start(index + 1)
        return (await read).pop(self._keys[position], None)
