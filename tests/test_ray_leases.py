"""The lease table as the work queue of a distributed batch (no Ray needed): disjoint claims, renewals,
expired leases returning to the pool, a lost lease refusing the late result, and the attempt limit."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from storage.core.schema import Feature
from storage.queue import leases
from storage.results import runs
from tests.pipeline_data import fill_layer

H = "cfg-hash"
RUN = 1  # the first run row of a fresh database (made by fill)


def fill(db, n: int) -> None:
    fill_layer(db, n)
    with db.session() as s, s.begin():
        assert [runs.start_run(s, "explain", {}) for _ in range(2)] == [RUN, RUN + 1]


def _feature_ids(db) -> list[int]:
    with db.session() as s:
        return list(s.scalars(select(Feature.id).order_by(Feature.id)))


def _claim(db, worker: str, n: int, lease_s: float = 60.0) -> list[int]:
    with db.session() as s, s.begin():
        return leases.claim(s, H, RUN, worker, n, lease_s)


def test_claims_are_disjoint_and_finished_features_never_come_back(db):
    fill(db, 10)
    ids = _feature_ids(db)
    with db.session() as s, s.begin():
        leases.offer(s, H, ids, run_id=RUN)
    a, b = _claim(db, "a", 4), _claim(db, "b", 4)
    assert a == ids[:4] and b == ids[4:8]
    with db.session() as s, s.begin():
        for f in a:
            leases.finish(s, H, "a", f)
        assert leases.renew(s, H, "b", b, 60.0) == 4
        leases.release(s, H, "b", b[2:])
    assert _claim(db, "c", 10) == b[2:] + ids[8:]
    with db.session() as s:
        state = leases.pool_state(s, H, RUN)
        assert state.unfinished == 6 and state.leased == 6 and state.abandoned == []


def test_concurrent_claimers_never_share_a_feature(db):
    fill(db, 40)
    with db.session() as s, s.begin():
        leases.offer(s, H, _feature_ids(db), run_id=RUN)

    def drain(worker: str) -> list[int]:
        got: list[int] = []
        while batch := _claim(db, worker, 3):
            got += batch
        return got

    with ThreadPoolExecutor(4) as pool:
        claimed = list(pool.map(drain, ["w1", "w2", "w3", "w4"]))
    flat = [f for got in claimed for f in got]
    assert sorted(flat) == _feature_ids(db) and len(set(flat)) == 40


def test_an_expired_lease_goes_to_another_worker_and_the_late_result_is_refused(db):
    fill(db, 2)
    ids = _feature_ids(db)
    with db.session() as s, s.begin():
        leases.offer(s, H, ids, run_id=RUN)
    assert _claim(db, "dead", 2, lease_s=0.2) == ids
    assert _claim(db, "alive", 2) == []  # still leased
    time.sleep(0.3)
    assert _claim(db, "alive", 2) == ids
    with db.session() as s, s.begin(), pytest.raises(leases.LeaseLost, match="lost its lease"):
        leases.finish(s, H, "dead", ids[0])
    with db.session() as s, s.begin():
        leases.finish(s, H, "alive", ids[0])


def test_a_feature_that_outlives_its_workers_is_abandoned_after_max_attempts(db):
    fill(db, 1)
    ids = _feature_ids(db)
    with db.session() as s, s.begin():
        leases.offer(s, H, ids, run_id=RUN)
    for attempt in range(leases.MAX_ATTEMPTS):
        assert _claim(db, f"w{attempt}", 1, lease_s=0.05) == ids
        time.sleep(0.1)
    assert _claim(db, "next", 1) == []
    with db.session() as s:
        assert leases.pool_state(s, H, RUN) == leases.PoolState(unfinished=0, leased=0, abandoned=ids)
    with db.session() as s, s.begin():  # offered again by a new run: a fresh start, in that run's pool only
        leases.offer(s, H, ids, run_id=RUN + 1)
    assert _claim(db, "old run", 1) == []
    with db.session() as s, s.begin():
        assert leases.claim(s, H, RUN + 1, "fresh", 1, 60.0) == ids
