"""`explain --executor ray` on a real local Ray cluster (127.0.0.1, one per module), against the fake OpenAI
server over real HTTP: the same scores as the local executor, one result per feature, and a worker killed
with SIGKILL mid-run costs nothing but its in-flight features, which another worker finishes."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from autointerp.cli import main
from autointerp.executors.ray_batch import RayJob, run_explain_on_ray
from autointerp.workflows.options import ExplainOptions
from storage.core.db import Database
from storage.core.schema import Explanation, Feature, Lease, Run, Score, Simulation
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import fill_layer

EXPLAIN = ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:fake",
           "--simulator", "logprob:openai:fake"]


@pytest.fixture(scope="module")
def ray_cluster():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # node address 127.0.0.1
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=3, object_store_memory=200 * 1024**2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _scores(db: Database) -> dict[tuple, float | None]:
    """(feature index, role, method, subset) -> value, for every score of the database."""
    with db.session() as s:
        rows = s.execute(select(Feature.index, Score.role, Score.method, Score.subset, Score.value)
                         .join(Feature, Feature.id == Score.feature_id)).all()
    return {(i, role, method, subset): value for i, role, method, subset, value in rows}


def _per_feature(db: Database, table, *where) -> list[int]:
    with db.session() as s:
        return [n for _, n in s.execute(select(table.feature_id, func.count()).where(*where)
                                        .group_by(table.feature_id))]


def test_two_workers_store_what_the_local_executor_stores(ray_cluster, fake_openai, db_url, db, tmp_path):
    fill_layer(db, 60, dead=(7,))
    local_url = f"sqlite:///{tmp_path / 'local.db'}"
    fill_layer(Database(local_url), 60, dead=(7,))
    local = CliRunner().invoke(main, [*EXPLAIN, "--db", local_url])
    assert local.exit_code == 0, local.output

    result = CliRunner().invoke(main, [*EXPLAIN, "--executor", "ray", "--workers", "2", "--concurrency", "4",
                                       "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "59 done, 0 skipped (finished before), 1 failed of 60" in " ".join(result.output.split())
    assert _per_feature(db, Explanation) == [1] * 60
    with db.session() as s:
        own = s.scalar(select(func.count()).select_from(Simulation).where(Simulation.role == "own"))
        run = s.scalars(select(Run).where(Run.kind == "explain")).one()
        leased = s.execute(select(Lease.finished, func.count()).group_by(Lease.finished)).all()
    assert own == 59 and run.status == "done" and run.stats["executor"] == "ray" and run.stats["workers"] == 2
    assert leased == [(True, 60)]
    scores = _scores(db)
    assert scores == _scores(Database(local_url)) and len(scores) > 59 * 4

    # The same command again: every feature finished, nothing requested.
    requests = fake_openai.requests
    again = CliRunner().invoke(main, [*EXPLAIN, "--executor", "ray", "--workers", "2", "--db", db_url])
    assert again.exit_code == 0, again.output
    assert "60 skipped" in again.output and fake_openai.requests == requests

    # rescore with another simulator: the same new scores as a local rescore.
    rescore = ["rescore", "--model", "tiny-model", "--layer", "6", "--simulator", "logprob:openai:other"]
    local = CliRunner().invoke(main, [*rescore, "--db", local_url])
    assert local.exit_code == 0, local.output
    result = CliRunner().invoke(main, [*rescore, "--executor", "ray", "--workers", "2", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "59 done, 0 skipped (finished before), 0 failed of 59" in " ".join(result.output.split())
    scores = _scores(db)
    assert scores == _scores(Database(local_url)) and len(scores) > 2 * 59 * 4


def _worker_pids(db: Database) -> set[int]:
    """Workers are named host:pid:tag; the lease table says who holds what right now."""
    with db.session() as s:
        names = s.scalars(select(Lease.worker).where(Lease.finished.is_(False), Lease.worker.is_not(None)))
        return {int(name.split(":")[1]) for name in names}


def test_a_worker_killed_mid_run_loses_nothing_and_nothing_is_done_twice(ray_cluster, sqlite_url):
    fake = FakeOpenAI(latency_s=0.1).start()
    try:
        db = Database(sqlite_url)
        fill_layer(db, 40)
        opts = ExplainOptions(model="tiny-model", layer=6, explainer="openai:fake", base_url=fake.url,
                              simulator="logprob:openai:fake", concurrency=2)
        outcome: dict = {}

        def drive() -> None:
            try:
                outcome["run_id"] = run_explain_on_ray(db, opts, RayJob(workers=2, lease_s=5.0), show_progress=False)
            except BaseException as exc:  # reported by the test below
                outcome["error"] = exc

        driver = threading.Thread(target=drive)
        driver.start()
        deadline = time.monotonic() + 120
        while len(_per_feature(db, Explanation)) < 8 or len(_worker_pids(db)) < 2:
            assert driver.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.05)
        victim = min(_worker_pids(db))
        os.kill(victim, signal.SIGKILL)
        with db.session() as s:
            finished_before = list(s.scalars(select(Explanation.text)))
        driver.join(timeout=180)
        assert not driver.is_alive() and "error" not in outcome, outcome

        assert 8 <= len(finished_before) < 40
        assert _per_feature(db, Explanation) == [1] * 40
        with db.session() as s:
            own = _per_feature(db, Simulation, Simulation.role == "own")
            run = s.get(Run, outcome["run_id"])
        assert own == [1] * 40 and run.status == "done" and run.stats["done"] == 40
        assert victim not in _worker_pids(db)
        # The fake answer names its prompt's hash: a feature finished before the kill was asked exactly once.
        for text in finished_before:
            prefix = text.rsplit(" ", 1)[-1]
            assert [n for h, n in fake.by_prompt.items() if h.startswith(prefix)] == [1], text
    finally:
        fake.stop()


def test_the_budget_holds_for_the_whole_job_and_a_rerun_continues(ray_cluster, fake_openai, sqlite_url):
    db = Database(sqlite_url)
    fill_layer(db, 30)
    args = ["explain", "--model", "tiny-model", "--layer", "6", "--explainer", "openai:gpt-4o-mini",
            "--simulator", "logprob:openai:fake", "--concurrency", "1", "--executor", "ray", "--workers", "2",
            "--db", sqlite_url]
    result = CliRunner().invoke(main, [*args, "--budget-usd", "0.0001"])
    assert result.exit_code == 0, result.output
    assert "stopped early: budget of $0.0001 reached" in result.output
    with db.session() as s:
        run = s.scalars(select(Run).where(Run.kind == "explain")).one()
        first = s.scalar(select(func.count()).select_from(Explanation))
    assert run.status == "stopped" and run.stats["cost_usd"] >= 0.0001 and 1 <= first < 30
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"{first} skipped" in result.output and _per_feature(db, Explanation) == [1] * 30
