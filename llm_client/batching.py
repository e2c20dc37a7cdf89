"""Batching across requests in flight for in-process models, and the torch threads each model worker uses.

`MicroBatcher` takes jobs from any event loop, gathers the ones that arrive close together (up to a maximum)
and hands them to a worker thread as one batch, so a model runs one padded batch instead of one request at
a time while the event loop keeps scheduling. Each batcher's thread is a model worker, and the process's
torch intra-op threads are split among the workers alive: on a 2-core machine the explainer's generate and
the embedding simulator's encode each run single-threaded side by side (one core each, no OpenMP team
waiting on a core the other holds), and a worker alone gets both. `spare_threads` tells a running batch
what an idle worker's share leaves unused (the embedding simulator then runs a second encode stream). The
budget is torch's own thread setting (OMP_NUM_THREADS, torch.set_num_threads) when first taken.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

import torch

J = TypeVar("J")
R = TypeVar("R")
_WAKE = object()  # put on a batcher's queue by close(): wakes its worker to see that it is closing

# --- threads ------------------------------------------------------------------------------------------------
_budget_lock = threading.Lock()
_total_threads: int | None = None
_alive = 0  # model workers alive: threads inside compute_slot
_running = 0  # batches being run right now
_local = threading.local()


def thread_budget() -> int:
    """The intra-op threads the in-process models share: torch's own setting when first asked (it follows
    OMP_NUM_THREADS and any torch.set_num_threads made before), so a user's choice is respected."""
    global _total_threads
    with _budget_lock:
        if _total_threads is None:
            _total_threads = max(1, torch.get_num_threads())
        return _total_threads


def set_thread_budget(n: int | None) -> None:
    """Fix the shared budget (None: take torch's setting again on next use)."""
    global _total_threads
    with _budget_lock:
        _total_threads = n if n is None else max(1, n)


@contextmanager
def compute_slot() -> Iterator[None]:
    """Count this thread as a model worker while inside (a batcher's worker thread for as long as it lives,
    which is until it has idled `idle_s`). Inside, `share_threads()` sets the thread's intra-op threads to
    its share of the budget among the workers alive. OpenMP and MKL keep the count per thread, so threads
    already using torch keep theirs; torch also remembers the last count set as the default for threads
    that start using it later, so this thread's own setting is restored on exit."""
    global _alive
    if getattr(_local, "current", None) is not None:  # already a worker
        yield
        return
    thread_budget()
    before = torch.get_num_threads()
    with _budget_lock:
        _alive += 1
    _local.current = before
    try:
        share_threads()
        yield
    finally:
        with _budget_lock:
            _alive -= 1
        if _local.current != before:  # pool threads are reused: leave this one as it was
            torch.set_num_threads(before)
        _local.current = None


def share_threads() -> int:
    """Inside `compute_slot`: give this thread its share of the budget now, budget // workers alive (call it
    before each forward pass or encode chunk); returns the share. Outside: no change."""
    current = getattr(_local, "current", None)
    if current is None:
        return torch.get_num_threads()
    total = thread_budget()
    with _budget_lock:
        n = max(1, total // max(1, _alive))
    if n != current:
        torch.set_num_threads(n)
        _local.current = n
    return n


def spare_threads() -> int:
    """Inside a running batch: the budget this worker's share leaves unused while no other worker is running a
    batch (another worker alive but idle, waiting for work), which a helper stream may take now; else 0."""
    current = getattr(_local, "current", None)
    if current is None:
        return 0
    with _budget_lock:
        total = _total_threads or max(1, torch.get_num_threads())
        return max(0, total - current) if _running <= 1 else 0


def running_batches() -> int:
    """Batches being run right now, by all batchers of the process."""
    with _budget_lock:
        return _running


@contextmanager
def _running_batch() -> Iterator[None]:
    global _running
    with _budget_lock:
        _running += 1
    try:
        yield
    finally:
        with _budget_lock:
            _running -= 1


# --- batching -----------------------------------------------------------------------------------------------
class MicroBatcher(Generic[J, R]):
    """Runs `run_batch(jobs) -> results` (one result or exception per job, in order) on a worker thread.

    The worker takes the first job waiting, then keeps gathering while more arrive within `linger_s` of the
    last one (at most `max_wait_s` in all, at most `max_batch` jobs): jobs from many features in flight that
    reach the model together share a batch, and a lone job waits only `linger_s`. The thread starts on the
    first job and ends after `idle_s` without one, so an unused batcher holds no thread; it serves any event
    loop (results go back with call_soon_threadsafe)."""

    def __init__(self, run_batch: Callable[[list[J]], Sequence[R | BaseException]], *, max_batch: int,
                 linger_s: float = 0.02, max_wait_s: float = 0.1, idle_s: float = 5.0, name: str = "batcher") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_batch, self.max_batch = run_batch, max_batch
        self.linger_s, self.max_wait_s, self.idle_s, self.name = linger_s, max_wait_s, idle_s, name
        self._queue: queue.Queue[tuple[J, Callable[[R | None, BaseException | None], None]]] = queue.Queue()
        self._state = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.batch_sizes: list[int] = []  # sizes of the batches run, for tests and benchmarks

    async def submit(self, job: J) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()

        def settle(result: R | None, error: BaseException | None) -> None:
            if future.done():  # the caller was cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]  # None only alongside an error

        def resolve(result: R | None, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # that event loop has closed: nobody is waiting any more
                pass

        with self._state:
            self._queue.put((job, resolve))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
        return await future

    def close(self) -> None:
        """Stop the worker and wait for it: the batch it is running finishes, jobs still queued fail (their callers
        are gone or going). A model thread still inside torch when the interpreter exits aborts the process
        (`terminate called without an active exception`, exit 134), so a run closes its batchers before it ends,
        interrupted or not. A later submit starts a new worker."""
        with self._state:
            thread = self._thread
            if thread is None:
                return
            self._closing.set()
        self._queue.put(_WAKE)  # type: ignore[arg-type]  # the worker never runs it
        thread.join()
        self._closing.clear()

    def _gather(self, first: tuple) -> list[tuple]:
        batch = [first]
        start = last = time.monotonic()
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()  # already waiting: take it without lingering
            except queue.Empty:
                timeout = min(last + self.linger_s, start + self.max_wait_s) - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
            if item is _WAKE:  # closing: run what is gathered; the worker then takes the wake-up again and stops
                self._queue.put(item)
                break
            batch.append(item)
            last = time.monotonic()
        return batch

    def _fail_queued(self, first: tuple) -> None:
        """On close: every job not yet run (`first` and the rest of the queue) fails."""
        pending = [first]
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in pending:
            if item is not _WAKE:
                item[1](None, RuntimeError(f"{self.name} was closed before this job ran"))

    def _work(self) -> None:
        with compute_slot():  # a model worker from its first job until it has idled idle_s
            self._serve()

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                with self._state:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if self._closing.is_set():
                self._fail_queued(first)
                with self._state:
                    self._thread = None
                return
            if first is _WAKE:
                continue
            batch = self._gather(first)
            self.batch_sizes.append(len(batch))
            try:
                with _running_batch():
                    results = list(self.run_batch([job for job, _ in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)}")
            except Exception as exc:  # every waiting caller gets the failure
                results = [exc] * len(batch)
            for (_, resolve), result in zip(batch, results):
                if isinstance(result, BaseException):
                    resolve(None, result)
                else:
                    resolve(result, None)
