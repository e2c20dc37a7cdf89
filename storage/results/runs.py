"""Run rows: start, heartbeat, progress, finish, and listing them with the status a reader should see
(a `running` run whose heartbeat is older than `storage.core.rows.STALE_AFTER` is shown as `stale`: its process died
without a word, by SIGKILL or power loss)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from activations.vocab import RunStatus
from storage.core.rows import run_dict
from storage.core.schema import Run

# A run beats this often; storage.core.rows.STALE_AFTER (several missed beats) makes it stale.
HEARTBEAT_INTERVAL_S = 10.0


def _now() -> datetime:
    return datetime.now(UTC)


def start_run(session: Session, kind: str, config: dict) -> int:
    """A new run row, status running, with a first heartbeat; returns its id."""
    run = Run(kind=kind, status=RunStatus.RUNNING, config=config, stats={}, heartbeat_at=_now())
    session.add(run)
    session.flush()
    return run.id


def adopt_run(session: Session, run_id: int, config: dict) -> None:
    """A run row made ahead of its work (by the API) takes the configuration the work records for itself."""
    session.execute(update(Run).where(Run.id == run_id).values(config=config, heartbeat_at=_now()))


def beat(session: Session, run_id: int) -> None:
    """Mark the run alive now."""
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=_now()))


def save_stats(session: Session, run_id: int, stats: dict) -> None:
    """Mirror a running run's progress counters (and mark it alive)."""
    session.execute(update(Run).where(Run.id == run_id).values(stats=stats, heartbeat_at=_now()))


def finish_run(session: Session, run_id: int, status: str, stats: dict | None = None) -> None:
    values: dict[str, Any] = {"status": status, "finished_at": _now()}
    if stats is not None:
        values["stats"] = stats
    session.execute(update(Run).where(Run.id == run_id).values(**values))


def add_error(session: Session, run_id: int, message: str) -> None:
    """Put a failure's reason into the run's stats, so readers of the run see why it failed."""
    run = session.get(Run, run_id)
    if run is not None:
        run.stats = {**(run.stats or {}), "error": message[:1000]}


def get_run(session: Session, run_id: int, *, now: datetime | None = None) -> dict[str, Any] | None:
    run = session.get(Run, run_id)
    return run_dict(run, now=now or _now()) if run is not None else None


def list_runs(session: Session, *, kinds: Sequence[str] | None = None, limit: int = 50,
              now: datetime | None = None) -> list[dict[str, Any]]:
    """Most recent runs first (optionally of some kinds only)."""
    stmt = select(Run).order_by(Run.id.desc()).limit(limit)
    if kinds is not None:
        stmt = stmt.where(Run.kind.in_(list(kinds)))
    now = now or _now()
    return [run_dict(run, now=now) for run in session.scalars(stmt)]
