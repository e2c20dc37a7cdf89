"""A run's database record while it goes: the row (created here, or adopted by id when the API made it),
a heartbeat every few seconds from a thread of its own (so a run that died silently shows as stale), the
stats mirrored as they change, and on exit the status the way it ended implies: done, stopped (budget),
interrupted (Ctrl-C or SIGTERM) or failed (with the error)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from activations.vocab import RunStatus
from autointerp.pipeline.run_stats import RunStats
from storage import runs
from storage.db import Database

SAVE_EVERY_S = 1.0


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
        if exc_type is None:
            status = RunStatus.STOPPED if self.stats.stopped_reason else RunStatus.DONE
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.INTERRUPTED
            self.stats.stopped_reason = self.stats.stopped_reason or "interrupted (Ctrl-C or SIGTERM)"
        else:
            status = RunStatus.FAILED
            self.stats.stopped_reason = f"{exc_type.__name__}: {exc}"[:1000]
        with self.db.session() as session, session.begin():
            runs.finish_run(session, self.run_id, status, self._stats_dict())
