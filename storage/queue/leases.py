"""The lease table as a work queue: a distributed batch offers its features, workers claim small batches
under a time-limited lease, renew what they still hold, and mark each feature finished in the transaction
that stores its result (so exactly one worker's result is kept). A dead worker's leases expire and its
features go back to the pool.

On PostgreSQL a claim is `SELECT ... FOR UPDATE SKIP LOCKED LIMIT n` then an UPDATE of those rows, so
concurrent claimers skip each other's rows; SQLite has no row locks, so there a claim is one
`UPDATE ... WHERE key IN (SELECT ... LIMIT n) RETURNING` statement under the database's single writer lock.
Times are the workers' UTC clocks: keep the machines' clocks in sync (NTP) well within a lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlalchemy.orm import Session

from storage.core.in_lists import chunks
from storage.core.schema import Explanation, Lease

MAX_ATTEMPTS = 3  # a feature whose workers died this many times is left out (reported, never retried forever)


class LeaseLost(RuntimeError):
    """This worker's lease on a feature expired and another worker took it: drop the result."""


def _now() -> datetime:
    return datetime.now(UTC)


def offer(session: Session, config_hash: str, feature_ids: Sequence[int], *, run_id: int) -> None:
    """Put these features in run `run_id`'s pool (unfinished, unleased, no attempts), whether or not a row
    existed."""
    ids = list(feature_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        known = set(session.scalars(select(Lease.feature_id).where(Lease.config_hash == config_hash,
                                                                   Lease.feature_id.in_(chunk))))
        if known:
            session.execute(update(Lease).where(Lease.config_hash == config_hash, Lease.feature_id.in_(known))
                            .values(finished=False, worker=None, expires_at=None, attempts=0, run_id=run_id))
        new = [{"feature_id": f, "config_hash": config_hash, "attempts": 0, "finished": False, "run_id": run_id}
               for f in chunk if f not in known]
        if new:
            session.execute(insert(Lease), new)


def _claimable(config_hash: str, run_id: int, now: datetime) -> ColumnElement[bool]:
    return and_(Lease.config_hash == config_hash, Lease.run_id == run_id, Lease.finished.is_(False),
                Lease.attempts < MAX_ATTEMPTS, or_(Lease.expires_at.is_(None), Lease.expires_at < now))


def claim(session: Session, config_hash: str, run_id: int, worker: str, n: int, lease_s: float) -> list[int]:
    """Lease up to `n` claimable features of run `run_id`'s pool to `worker` for `lease_s` seconds; their ids,
    lowest first. (The pool is the run's: a configuration is shared by every layer, and an earlier run's
    unfinished rows are not this run's work.)"""
    now = _now()
    wanted = (select(Lease.feature_id).where(_claimable(config_hash, run_id, now)).order_by(Lease.feature_id)
              .limit(n))
    claimed = update(Lease).values(worker=worker, expires_at=now + timedelta(seconds=lease_s),
                                   attempts=Lease.attempts + 1)
    if session.get_bind().dialect.name == "sqlite":
        # One statement under the writer lock: no other claimer runs between its read and its write.
        stmt = claimed.where(Lease.config_hash == config_hash, Lease.feature_id.in_(wanted.scalar_subquery()))
        return sorted(session.scalars(stmt.returning(Lease.feature_id),
                                      execution_options={"synchronize_session": False}))
    # PostgreSQL: lock the rows first (a LIMIT inside UPDATE ... IN may be re-evaluated and overshoot).
    ids = list(session.scalars(wanted.with_for_update(skip_locked=True)))
    if ids:
        session.execute(claimed.where(Lease.config_hash == config_hash, Lease.feature_id.in_(ids)),
                        execution_options={"synchronize_session": False})
    return sorted(ids)


def renew(session: Session, config_hash: str, worker: str, feature_ids: Sequence[int], lease_s: float) -> int:
    """Extend this worker's unfinished leases; returns how many it still held."""
    if not feature_ids:
        return 0
    result = session.execute(
        update(Lease).where(Lease.config_hash == config_hash, Lease.worker == worker, Lease.finished.is_(False),
                            Lease.feature_id.in_(list(feature_ids)))
        .values(expires_at=_now() + timedelta(seconds=lease_s)),
        execution_options={"synchronize_session": False})
    return int(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, config_hash: str, worker: str, feature_ids: Sequence[int]) -> None:
    """Give unstarted features back at once (a worker stopping cleanly); the claim does not count as an attempt."""
    if feature_ids:
        session.execute(
            update(Lease).where(Lease.config_hash == config_hash, Lease.worker == worker, Lease.finished.is_(False),
                                Lease.feature_id.in_(list(feature_ids)))
            .values(worker=None, expires_at=None, attempts=Lease.attempts - 1),
            execution_options={"synchronize_session": False})


def finish(session: Session, config_hash: str, worker: str, feature_id: int) -> None:
    """Mark the feature finished, in the caller's transaction that stores its result. Raises LeaseLost when
    `worker` no longer holds it, so the caller rolls the result back and exactly one result stays."""
    result = session.execute(
        update(Lease).where(Lease.config_hash == config_hash, Lease.feature_id == feature_id, Lease.worker == worker,
                            Lease.finished.is_(False))
        .values(finished=True, expires_at=None),
        execution_options={"synchronize_session": False})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"feature {feature_id}: worker {worker} lost its lease (expired, taken by another worker)")


def check_held(session: Session, config_hash: str, worker: str, feature_id: int) -> None:
    """Raise LeaseLost unless `worker` still holds the unfinished feature (for a save that is not the last)."""
    held = session.scalar(select(Lease.feature_id).where(
        Lease.config_hash == config_hash, Lease.feature_id == feature_id, Lease.worker == worker,
        Lease.finished.is_(False)).with_for_update())
    if held is None:
        raise LeaseLost(f"feature {feature_id}: worker {worker} lost its lease (expired, taken by another worker)")


@dataclass(frozen=True)
class PoolState:
    unfinished: int  # still to do: claimable now, or leased to a worker (which may die)
    leased: int  # of those, under a live lease
    abandoned: list[int]  # feature ids left out after MAX_ATTEMPTS dead workers


def pool_state(session: Session, config_hash: str, run_id: int) -> PoolState:
    """Where run `run_id`'s pool stands."""
    now = _now()
    rows = session.execute(select(Lease.feature_id, Lease.attempts, Lease.expires_at).where(
        Lease.config_hash == config_hash, Lease.run_id == run_id, Lease.finished.is_(False))).all()
    abandoned = sorted(f for f, attempts, _ in rows if attempts >= MAX_ATTEMPTS)
    live = sum(1 for _, attempts, expires in rows if attempts < MAX_ATTEMPTS and expires is not None
               and _aware(expires) >= now)
    return PoolState(unfinished=len(rows) - len(abandoned), leased=live, abandoned=abandoned)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def group_by_feature(session: Session, explanation_ids: Sequence[int]) -> dict[int, list[int]]:
    """A distributed rescore's units: feature id -> its explanations among `explanation_ids` (ascending)."""
    out: dict[int, list[int]] = {}
    for chunk in chunks(explanation_ids):
        rows = session.execute(select(Explanation.feature_id, Explanation.id).where(Explanation.id.in_(chunk)))
        for feature_id, explanation_id in rows:
            out.setdefault(feature_id, []).append(explanation_id)
    return {f: sorted(e) for f, e in out.items()}
