"""`explain` and `rescore` with `--executor ray`: the driver offers the run's features to the lease table,
starts N worker actors (batch_worker) and a ledger actor, and shows one progress bar for the whole job
while the workers drain the pool. The database stays the source of truth: a rerun of the same command
skips what any worker finished, and a killed driver leaves nothing half-written.

Worker actors restart when their process dies (the call is retried on the new process, which claims
again); the dead process's leases expire after `--lease-seconds` and go to whoever claims next. The ledger
restarts too (ledger.py rebuilds its counts), so only the driver is a single point of failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activations.vocab import FailureKind, OutcomeStatus, RunKind
from autointerp.executors.batch_worker import BatchWorker, WorkSpec
from autointerp.executors.cluster import alive_nodes, connect
from autointerp.executors.ledger import JobLedger, JobTotals, WorkerReport
from autointerp.runtime.interrupts import sigterm_interrupts
from autointerp.runtime.progress import ProgressDisplay
from autointerp.runtime.run_record import RunRecord
from autointerp.runtime.run_stats import RunStats
from autointerp.workflows.explain_run import plan_explain
from autointerp.workflows.options import ExplainOptions, OptionsError, RescoreOptions
from autointerp.workflows.rescore_run import plan_rescore, rescored
from llm_client.local_models import cache_dir
from scorer import simulation_config, simulation_scorer_config
from storage.core import repository as repo
from storage.core.db import Database
from storage.queue import leases
from storage.results import already_done

POLL_S = 0.5
WORKER_RESTARTS = 3  # a worker process that dies is restarted this many times (its call retried)
LEDGER_RESTARTS = 10  # the ledger too; calls to it wait for the new process (its methods are idempotent)
STOP_WAIT_S = 30.0  # interrupted: how long the stopped workers' calls may take to end, the ledger to answer


@dataclass(frozen=True)
class RayJob:
    address: str = "auto"
    workers: int = 2
    lease_s: float = 120.0
    claim_size: int | None = None  # features claimed at once; default: a quarter of --concurrency, at least 1


def shared_db_url(db: Database) -> str:
    """The URL every worker opens: SQLite as an absolute path (workers have their own working directory)."""
    if not db.url.startswith("sqlite"):
        return db.url
    path = db.url[len("sqlite:///"):]
    if path in ("", ":memory:"):
        raise OptionsError("--executor ray needs a database the workers can open: a SQLite file or PostgreSQL, "
                           "not an in-memory database")
    return f"sqlite:///{os.path.abspath(path)}"


def _worker_options(ray: Any, job: RayJob, uses_local_model: bool, device: str) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": 1, "max_restarts": WORKER_RESTARTS, "max_task_retries": WORKER_RESTARTS}
    gpus = ray.cluster_resources().get("GPU", 0)
    if uses_local_model and gpus and device in ("auto", "cuda"):
        options["num_gpus"] = min(1.0, gpus / job.workers)  # workers share the cluster's GPUs
    return options


def _uses_local_model(*specs: str | None) -> bool:
    return any(s and (s.startswith("local:") or s.startswith("embedding") or ":local:" in s) for s in specs)


def _absorb(record: RunRecord, totals: JobTotals, workers: int) -> None:
    stats = record.stats
    stats.done, stats.failed, stats.failures = totals.done, totals.failed, dict(totals.failures)
    if totals.llm:
        stats.absorb_llm(totals.llm)
    if totals.run_failed and not stats.stopped_reason:
        stats.fail_run(totals.stopped_reason or "--fail-fast")
    stats.stopped_reason = stats.stopped_reason or totals.stopped_reason
    record.details.update(endpoints=totals.endpoints, executor="ray", workers=workers, lost_results=totals.lost)


def ledger_name(run_id: int) -> str:
    """The ledger actor's name in Ray (`ray.get_actor`): one per run."""
    return f"autointerp-ledger-{run_id}"


def _start_ledger(ray: Any, spec: WorkSpec, budget: float | None) -> Any:
    # Its constructor gets the database and run: a restarted ledger starts from what the run's row stored.
    return ray.remote(JobLedger).options(
        num_cpus=0, max_restarts=LEDGER_RESTARTS, max_task_retries=-1, name=ledger_name(spec.run_id),
    ).remote(budget, spec.opts.fail_fast, spec.db_url, spec.run_id)


def _drain(ray: Any, calls: dict[Any, Any], ledger: Any, record: RunRecord, display: ProgressDisplay,
           workers: int) -> int:
    """Wait for the workers' calls, showing the ledger's totals; returns how many workers were lost."""
    lost_workers = 0
    while calls:
        ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=POLL_S)
        for ref in ready:
            calls.pop(ref)
            try:
                final = ray.get(ref)
            except ray.exceptions.RayActorError:
                lost_workers += 1  # died more often than it may restart; the others carry on
                continue
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
            # Its final report again: a ledger restarted after the worker's last report still counts it.
            ray.get(ledger.report.remote(final))
        _absorb(record, ray.get(ledger.totals.remote()), workers)
        display.show_stats(record.stats)
        if record.save_due():
            record.save()
    return lost_workers


def _count_after_stop(ray: Any, workers: list[Any], calls: list[Any], ledger: Any, record: RunRecord,
                      recount: Callable[[RunStats], None]) -> None:
    """Interrupted: stop the workers first, so that the counts read afterwards (the ledger's spend, the
    database's finished features) are the final ones, not the last poll's."""
    for worker in workers:
        ray.kill(worker)
    if calls:  # each ends (with an error) once its worker's process is gone: nothing more gets stored
        ray.wait(calls, num_returns=len(calls), timeout=STOP_WAIT_S)
    _absorb(record, ray.get(ledger.totals.remote(), timeout=STOP_WAIT_S), len(workers))
    recount(record.stats)


def _abandoned(db: Database, record: RunRecord, feature_ids: list[int]) -> None:
    with db.session() as session:
        indices = [feature.index for feature in repo.get_features(session, feature_ids)]
    for index in indices:
        record.stats.record_failure(index, f"abandoned: {leases.MAX_ATTEMPTS} workers died working on it")


def _add_finished(stats: RunStats, finished: WorkerReport | None) -> None:
    # The finishing pass adds its own (example scorer failures, say) to the database's recount.
    if finished is not None:
        stats.done += finished.done
        stats.failed += finished.failed
        if finished.skipped:  # a pass that scored by itself (rescore without simulation) says what it skipped
            stats.skipped = finished.skipped


def _run_job(db: Database, kind: str, run_config: dict, job: RayJob, *, total: int, skipped: int,
             pool: list[int], make_spec: Callable[[int, int], WorkSpec], finishing_ids: list[int], budget: float | None,
             label: str, unit: str, show_progress: bool, recount: Callable[[RunStats], None]) -> int:
    if job.workers < 1:
        raise OptionsError(f"--workers must be >= 1 (got {job.workers})")
    ray = connect(job.address)
    if db.url.startswith("sqlite") and alive_nodes(ray) > 1:
        raise OptionsError("--executor ray on a cluster of several machines needs a database they all reach: pass "
                           "--db postgresql+psycopg://USER@HOST/DB (SQLite serves workers on this machine only)")
    with sigterm_interrupts(), RunRecord(db, kind, run_config, total=total) as record, \
            ProgressDisplay(total, label=label, unit=unit, show=show_progress) as display:
        record.stats.skipped = skipped
        spec = make_spec(record.run_id, max(1, job.claim_size or make_claim_size(run_config)))
        with db.session() as session, session.begin():
            leases.offer(session, spec.config_hash, pool, run_id=record.run_id)
        ledger = _start_ledger(ray, spec, budget)
        worker_cls = ray.remote(BatchWorker).options(**_worker_options(
            ray, job, _uses_local_model(run_config.get("explainer"), run_config.get("simulator")),
            run_config.get("device", "auto")))
        workers = [worker_cls.remote() for _ in range(job.workers)]
        calls: dict[Any, Any] = {}
        try:
            spec_ref = ray.put(spec)
            calls.update({w.run.remote(spec_ref, ledger): w for w in workers})
            record.details["workers_lost"] = _drain(ray, calls, ledger, record, display, job.workers)
            with db.session() as session:
                state = leases.pool_state(session, spec.config_hash, record.run_id)
            if state.unfinished and not record.stats.stopped_reason:
                raise RuntimeError(f"all {job.workers} workers died with {state.unfinished} features unfinished; "
                                   "rerun the same command to finish them")
            _abandoned(db, record, state.abandoned)
            finished = None
            if not record.stats.stopped_reason:
                finished = ray.get(workers[0].finish.remote(spec_ref, finishing_ids, ledger))
                ray.get(ledger.report.remote(finished))  # as the workers' final reports above
            _absorb(record, ray.get(ledger.totals.remote()), job.workers)
            # The database has the last word on the features: a worker killed between storing a result and
            # reporting it was not counted.
            recount(record.stats)
            _add_finished(record.stats, finished)
            display.show_stats(record.stats)
        except KeyboardInterrupt:
            _count_after_stop(ray, workers, list(calls), ledger, record, recount)
            raise
        finally:
            for actor in [*workers, ledger]:
                ray.kill(actor)
    return record.run_id


def make_claim_size(run_config: dict) -> int:
    return int(run_config.get("concurrency", 4)) // 4


def run_explain_on_ray(db: Database, opts: ExplainOptions, job: RayJob, *, show_progress: bool = True) -> int:
    """`explain` spread over `job.workers` Ray actors; the same results as the local run, one row set per
    feature. Returns the run id. One polarity per run: --polarity both runs on the local executor."""
    if len(opts.sides()) > 1:
        raise OptionsError("--polarity both runs on the local executor only; with --executor ray run explain once "
                           "with --polarity positive and once with --polarity negative (each resumes on its own)")
    plan = plan_explain(db, opts)
    config, chash, features, todo = plan.config, plan.config_hash, plan.features, plan.todo
    url = shared_db_url(db)

    def spec(run_id: int, claim_size: int) -> WorkSpec:
        return WorkSpec("explain", url, opts, config, chash, run_id, job.lease_s, claim_size, cache_dir())

    def recount(stats: RunStats) -> None:
        with db.session() as session:
            statuses = already_done.finished_features(session, [f.id for f in todo], config_hash=chash)
        stats.done = sum(1 for finished in statuses.values() if finished.status == OutcomeStatus.OK)
        stats.failed = len(statuses) - stats.done
        stats.input_failures = sum(1 for finished in statuses.values() if finished.failure_kind == FailureKind.INPUT)
        stats.endpoint_failures = sum(1 for finished in statuses.values() if finished.redo(retry_failed=False))

    run_config = {**opts.as_dict(), "config_hash": chash, "executor": "ray", "workers": job.workers}
    return _run_job(db, RunKind.EXPLAIN, run_config, job, total=len(features), skipped=len(features) - len(todo),
                    pool=[f.id for f in todo], make_spec=spec, finishing_ids=[f.id for f in features],
                    budget=opts.budget_usd, label="features", unit="feat", show_progress=show_progress,
                    recount=recount)


def run_rescore_on_ray(db: Database, opts: RescoreOptions, job: RayJob, *, show_progress: bool = True) -> int:
    """`rescore` spread over `job.workers` Ray actors: features leased, each with its explanations to simulate;
    then one finishing pass (baselines, example scorers). Returns the run id."""
    config = simulation_config(opts.simulator)
    chash = repo.config_hash({"rescore": config, "explainer": opts.explainer, "calibrate": opts.calibrate,
                              "scores": simulation_scorer_config()})
    plan = plan_rescore(db, opts)
    with db.session() as session:
        todo = leases.group_by_feature(session, plan.todo)
    url = shared_db_url(db)

    def spec(run_id: int, claim_size: int) -> WorkSpec:
        return WorkSpec("rescore", url, opts, config, chash, run_id, job.lease_s, claim_size, cache_dir(),
                        explanations=todo,
                        simulated_before=frozenset(plan.simulated_before))

    def recount(stats: RunStats) -> None:
        with db.session() as session:
            stats.done = len(rescored(session, plan.todo, opts.simulator))

    run_config = {**opts.as_dict(), "simulation_config": config, "scorer_config": simulation_scorer_config(),
                  "executor": "ray", "workers": job.workers}
    return _run_job(db, RunKind.RESCORE, run_config, job, total=len(plan.explanation_ids),
                    skipped=len(plan.explanation_ids) - len(plan.todo), pool=sorted(todo), make_spec=spec,
                    finishing_ids=plan.explanation_ids, budget=None, label="explanations", unit="expl",
                    show_progress=show_progress, recount=recount)
