"""SIGTERM (what a scheduler or container runtime sends) stops a run the way Ctrl-C does: in-flight
features are abandoned, each stored feature stays whole, and the run is marked interrupted. Which of the two
it was is remembered, so the command exits 128 + that signal (143 or 130)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_received: dict[str, int] = {}  # "signum": the signal that interrupted the run now in progress


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM whose row is already marked interrupted: the command prints its
    summary and exits with `exit_code`. A KeyboardInterrupt still, for callers that only know that."""

    def __init__(self, run_id: int, exit_code: int) -> None:
        super().__init__(f"run {run_id} interrupted")
        self.run_id, self.exit_code = run_id, exit_code


def interrupting_signal() -> int:
    """The signal that interrupted the current run: SIGTERM when its handler ran, else SIGINT (Ctrl-C)."""
    return _received.get("signum", signal.SIGINT)


def _as_sigint(signum: int, frame: FrameType | None) -> None:
    _received["signum"] = signum
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
    _received.clear()
    previous = signal.signal(signal.SIGTERM, _as_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
