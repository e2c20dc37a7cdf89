"""`--executor ray` tells the truth when things go wrong, on a real local Ray cluster against the fake OpenAI
server: its first features all failing stops the job as failed (--fail-fast, exit 4) as a local run does; an
interrupted job's summary has the final counts; the workers keep the cache folder the command was started
with; and a killed ledger actor comes back with the job's counts, so the job still ends `done`."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from autointerp.cli import main
from autointerp.executors.ledger import JobLedger, WorkerReport
from autointerp.executors.ray_batch import RayJob, ledger_name, run_explain_on_ray
from autointerp.runtime.interrupts import RunInterrupted
from autointerp.workflows.options import ExplainOptions
from storage.core.db import Database
from storage.core.schema import Explanation, Run
from storage.results.runs import save_stats, start_run
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import fill_layer, uncached_spec
from tests.test_ray_explain import ray_cluster  # noqa: F401  (the module's local cluster)
from tests.test_run_exits import closed_port_url

ENDPOINT_DOWN = "the first 5 features all failed on the endpoint (--fail-fast 5)"


def ray_explain(db_url: str, *more: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["explain", "--model", "tiny-model", "--layer", "6", "--explainer",
                                     uncached_spec(), "--simulator", "logprob:openai:fake", "--no-shuffled-baseline",
                                     "--executor", "ray", "--workers", "2", "--db", db_url, *more], env=env)


def latest_run(db: Database) -> Run:
    with db.session() as s:
        return s.scalars(select(Run).order_by(Run.id.desc())).first()


def features_explained(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count(func.distinct(Explanation.feature_id)))
                        .where(Explanation.status == "ok")) or 0


def when(condition: Callable[[], bool], then: Callable[[], None], timeout_s: float = 120) -> threading.Thread:
    """A thread that runs `then` once `condition` holds (polled), for acting on a run in flight."""
    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_the_ledger_fails_fast_on_the_jobs_first_outcomes_across_workers():
    ledger = JobLedger(None, fail_fast=3)
    a, b = WorkerReport("a"), WorkerReport("b")
    a.add_outcome(("HTTP 500 after 3 attempts", None), 3)
    assert not ledger.report(a) and not ledger.report(a)  # a repeated (cumulative) report counts once
    b.add_outcome(("HTTP 500 after 4 attempts", None), 3)
    assert not ledger.report(b)
    a.add_outcome(("HTTP 500 after 3 attempts", None), 3)
    assert ledger.report(a)
    totals = ledger.totals()
    assert totals.run_failed and totals.stopped_reason.startswith("the first 3 features all failed the same way")

    watched = JobLedger(None, fail_fast=2)  # a success anywhere ends the watch
    b = WorkerReport("b")
    b.add_outcome((None, None), 2)
    watched.report(b)
    a = WorkerReport("a", outcomes=[("HTTP 500", None), ("HTTP 500", None)])
    assert not watched.report(a) and not watched.totals().run_failed


def test_a_restarted_ledger_starts_from_the_stored_spend_so_the_budget_holds(db):
    with db.session() as s, s.begin():
        run_id = start_run(s, "explain", {})
        save_stats(s, run_id, {"done": 7, "failed": 1, "llm_requests": 20, "prompt_tokens": 900, "cost_usd": 0.9})
    restarted = JobLedger(1.0, fail_fast=5, db_url=db.url, run_id=run_id)
    # The first worker to report again has spent 0.5 of the job's 0.9 so far: the stored 0.9 still counts.
    assert not restarted.report(WorkerReport("a", done=4, llm={"cost_usd": 0.5, "requests": 11}))
    totals = restarted.totals()
    assert (totals.done, totals.failed, totals.llm["cost_usd"], totals.llm["requests"]) == (7, 1, 0.9, 20)
    assert restarted.report(WorkerReport("b", done=4, llm={"cost_usd": 0.55, "requests": 10}))
    assert restarted.totals().llm["requests"] == 21 and "budget of $1.0 reached" in restarted.totals().stopped_reason
    # The stored run had successes: a restarted ledger, which no longer knows the order of the job's first
    # outcomes, does not start a new --fail-fast watch.
    unbudgeted = JobLedger(None, fail_fast=5, db_url=db.url, run_id=run_id)
    assert not unbudgeted.report(WorkerReport("c", outcomes=[("HTTP 500", None)] * 5))
    assert not unbudgeted.totals().run_failed


def test_first_features_failing_on_the_endpoint_stop_the_job_as_failed(ray_cluster, sqlite_url):  # noqa: F811
    db = Database(sqlite_url)
    fill_layer(db, 24)
    result = ray_explain(sqlite_url, "--base-url", closed_port_url(), "--concurrency", "2")
    assert result.exit_code == 4, result.output
    assert ENDPOINT_DOWN in " ".join(result.output.split())
    run = latest_run(db)
    assert run.status == "failed" and run.stats["exit_code"] == 4 and run.stats["executor"] == "ray"
    assert 5 <= run.stats["failed"] == run.stats["endpoint_failures"] < 24  # the workers stopped claiming


def test_an_interrupted_job_counts_what_the_database_holds(ray_cluster, sqlite_url):  # noqa: F811
    fake = FakeOpenAI(latency_s=0.1).start()
    try:
        db = Database(sqlite_url)
        fill_layer(db, 40)
        opts = ExplainOptions(model="tiny-model", layer=6, explainer="openai:fake", base_url=fake.url,
                              simulator="logprob:openai:fake", concurrency=2, shuffled_baseline=False)
        when(lambda: features_explained(db) >= 8, lambda: os.kill(os.getpid(), signal.SIGTERM))
        with pytest.raises(RunInterrupted) as stop:
            run_explain_on_ray(db, opts, RayJob(workers=2), show_progress=False)
        assert stop.value.exit_code == 143
        run = latest_run(db)
        stored = features_explained(db)
        assert run.status == "interrupted" and 8 <= stored < 40
        assert run.stats["done"] == stored and run.stats["exit_code"] == 143
    finally:
        fake.stop()


def test_a_killed_ledger_comes_back_and_the_job_ends_done(ray_cluster, db_url):  # noqa: F811
    fake = FakeOpenAI(latency_s=0.05).start()
    try:
        db = Database(db_url)
        fill_layer(db, 40)
        opts = ExplainOptions(model="tiny-model", layer=6, explainer=uncached_spec(), base_url=fake.url,
                              simulator="logprob:openai:fake", concurrency=2, shuffled_baseline=False)
        killed: dict = {}

        def kill_ledger() -> None:
            killed["at"] = features_explained(db)
            ray_cluster.kill(ray_cluster.get_actor(ledger_name(latest_run(db).id)), no_restart=False)

        watcher = when(lambda: features_explained(db) >= 8, kill_ledger)
        run_id = run_explain_on_ray(db, opts, RayJob(workers=2), show_progress=False)
        watcher.join(timeout=10)
        assert 8 <= killed["at"] < 40
        with db.session() as s:
            run = s.get(Run, run_id)
        assert run.status == "done" and run.stats["exit_code"] == 0 and run.stats["done"] == 40
        # Every worker's next (cumulative) report rebuilt the totals: each request the server answered is counted.
        assert run.stats["llm_requests"] == fake.requests and features_explained(db) == 40
    finally:
        fake.stop()


def test_workers_keep_their_responses_in_the_cache_folder_the_command_was_given(ray_cluster, fake_openai,  # noqa: F811
                                                                                db_url, tmp_path: Path):
    if db_url.startswith("sqlite"):
        pytest.skip("with SQLite the response cache sits next to the database file, not in the cache folder")
    fill_layer(Database(db_url), 6)
    cache = tmp_path / "cache"
    result = ray_explain(db_url, env={"AUTOINTERP_CACHE": str(cache)})
    assert result.exit_code == 0, result.output
    with sqlite3.connect(cache / "llmcache.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM responses").fetchone()[0] >= 6
