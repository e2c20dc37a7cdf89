"""SIGTERM (what a scheduler or container runtime sends) stops a run the way Ctrl-C does: in-flight
features are abandoned, each stored feature stays whole, and the run is marked interrupted."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def _as_sigint(_signum: int, frame: FrameType | None) -> None:
    # Whatever handles Ctrl-C right now: asyncio.run's handler cancels the main task, otherwise the
    # default handler raises KeyboardInterrupt.
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM acts as Ctrl-C. Signals reach only the main thread: elsewhere (API job
    threads) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _as_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
