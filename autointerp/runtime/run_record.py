"""A run's database record while it goes: the row (created here, or adopted by id when the API made it),
a heartbeat every few seconds from a thread of its own (so a run that died silently shows as stale), the
stats mirrored as they change, and on exit the status the way it ended implies: done, stopped (budget),
interrupted (Ctrl-C or SIGTERM: then RunInterrupted is raised, carrying the run id) or failed (--fail-fast, or
an error), with the exit code the command ends with (exit_codes)."""

from __future__ import annotations

import threading
import time
from signal import Signals
from types import TracebackType

from activations.vocab import RunStatus
from autointerp.runtime import exit_codes
from autointerp.runtime.interrupts import RunInterrupted, interrupting_signal
from autointerp.runtime.run_stats import RunStats
from storage.core.db import Database
from storage.results import runs

SAVE_EVERY_S = 1.0


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == Signals.SIGINT else Signals(signum).name


class RunRecord:
    def __init__(self, db: Database, kind: str, config: dict, *, run_id: int | None = None, total: int = 0) -> None:
        self.db = db
        with db.session() as session, session.begin():
            if run_id is None:
                run_id = runs.start_run(session, kind, config)
            else:
                runs.adopt_run(session, run_id, config)
        self.run_id = run_id
        self.stats = RunStats(total=total)
        self.details: dict = {}  # what else the run wants kept with its stats (collect: per-layer counts)
        self._last_save = 0.0
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beat, name=f"run-{run_id}-heartbeat", daemon=True)

    def __enter__(self) -> RunRecord:
        self._heart.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(runs.HEARTBEAT_INTERVAL_S):
            try:
                with self.db.session() as session, session.begin():
                    runs.beat(session, self.run_id)
            except Exception:
                continue

    def _stats_dict(self) -> dict:
        return {**self.stats.as_dict(), **self.details}

    def save_due(self) -> bool:
        """Whether the stats were last mirrored more than SAVE_EVERY_S ago."""
        return time.monotonic() - self._last_save > SAVE_EVERY_S

    def save(self) -> None:
        """Mirror the stats into the row."""
        self._last_save = time.monotonic()
        with self.db.session() as session, session.begin():
            runs.save_stats(session, self.run_id, self._stats_dict())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self._stop.set()
        self._heart.join()
        stats = self.stats
        status = self._status(exc_type, exc)
        with self.db.session() as session, session.begin():
            runs.finish_run(session, self.run_id, status, self._stats_dict())
        if status == RunStatus.INTERRUPTED and not isinstance(exc, RunInterrupted):
            raise RunInterrupted(self.run_id, stats.exit_code or exit_codes.interrupted(interrupting_signal())) \
                from exc

    def _status(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> RunStatus:
        """How the run ended, with its stopped reason and exit code set in the stats."""
        stats = self.stats
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            signum = interrupting_signal()
            stats.stopped_reason = stats.stopped_reason or f"interrupted ({signal_name(signum)})"
            stats.exit_code = exit_codes.interrupted(signum)
            return RunStatus.INTERRUPTED
        if exc_type is not None:
            stats.stopped_reason = f"{exc_type.__name__}: {exc}"[:1000]
            stats.exit_code = exit_codes.ERROR
            return RunStatus.FAILED
        if stats.run_failed:
            stats.exit_code = exit_codes.RUN_FAILED
            return RunStatus.FAILED
        # A dead feature fails on every run: it is counted, but says nothing about this one.
        stats.exit_code = exit_codes.SOME_FAILED if stats.failed > stats.input_failures else exit_codes.ALL_DONE
        return RunStatus.STOPPED if stats.stopped_reason else RunStatus.DONE
