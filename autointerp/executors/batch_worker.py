"""A worker of a distributed explain or rescore: a Ray actor that runs the same per-feature step as the local
run (its own LLM client and simulator, its own event loop), on features it claims from the lease table.

It keeps `concurrency` features in flight, claiming a few at a time as slots free up; renews its leases
while it works; stores each result in a transaction that first marks the lease finished (a lease that
passed to another worker drops the result, so exactly one is kept); and reports cumulative counts to the
job's ledger, which answers whether to stop (budget, --fail-fast). It keeps the cache folder the driver was
started with (AUTOINTERP_CACHE): its response cache and converted models live there, not where the worker
process's own environment would put them. When nothing is claimable but other workers still
hold leases it waits: a dead worker's leases expire and this worker takes them over.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from autointerp.executors.ledger import Outcome, WorkerReport
from autointerp.runtime.db_threads import DatabaseThreads
from autointerp.runtime.gc_tuning import batch_collector
from autointerp.runtime.run_stats import RunStats, llm_counters, merge_llm_stats
from autointerp.workflows.explain_run import (
    FeatureInput,
    explain_feature,
    finishing_passes,
    load_inputs,
    make_clients,
    make_explain_scorers,
)
from autointerp.workflows.options import ExplainOptions, RescoreOptions
from llm_client.endpoints import endpoint_stats_of
from llm_client.local_models import use_cache_dir
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature
from storage.queue import leases

REPORT_EVERY_S = 0.25


@dataclass(frozen=True)
class WorkSpec:
    """What every worker of one job is told (pickled once per worker)."""

    kind: str  # "explain" | "rescore"
    db_url: str
    opts: ExplainOptions | RescoreOptions
    config: dict  # explain: the explanation configuration
    config_hash: str  # the lease pool's key, with run_id
    run_id: int
    lease_s: float
    claim_size: int
    cache_dir: Path  # the driver's (settings): the response cache and local models, on every worker
    explanations: dict[int, list[int]] = field(default_factory=dict)  # rescore: feature id -> explanations to do
    simulated_before: frozenset[int] = frozenset()  # rescore --calibrate: only calibrated scores to add


class Units(Protocol):
    """How one kind of job does one claimed feature, and what its clients counted."""

    async def run(self, store: DatabaseThreads, feature_id: int, stats: RunStats) -> list[Outcome]:
        """Do the feature; its outcomes (explain: one; rescore: one per explanation; none when another run
        stored it first)."""
        ...

    def llm_stats(self) -> dict[str, Any]: ...
    def endpoints(self) -> list[dict[str, Any]]: ...
    async def aclose(self) -> None: ...


def _feature_with_inputs(db: Database, opts: ExplainOptions, feature_id: int) -> tuple[Feature, FeatureInput]:
    with db.session() as session:
        feature = repo.get_feature(session, feature_id)
        return feature, load_inputs(session, [feature], opts)[feature.id]


class _ExplainUnits:
    def __init__(self, spec: WorkSpec, db: Database, worker: str) -> None:
        assert isinstance(spec.opts, ExplainOptions)
        self.spec, self.db, self.worker, self.opts = spec, db, worker, spec.opts
        self.client, self.simulator = make_clients(db, spec.opts)

    def _guard(self, session: Any, feature_id: int) -> None:
        leases.finish(session, self.spec.config_hash, self.worker, feature_id)

    async def run(self, store: DatabaseThreads, feature_id: int, stats: RunStats) -> list[Outcome]:
        feature, (records, windows, steering) = await store.read(_feature_with_inputs, self.db, self.opts,
                                                                 feature_id)
        outcome = await explain_feature(self.db, store, self.opts, self.client, self.simulator, feature,
                                        self.spec.config, self.spec.run_id, stats, records, guard=self._guard,
                                        windows=windows, steering=steering)
        return [] if outcome is None else [(outcome.failure, outcome.failure_kind)]

    def llm_stats(self) -> dict[str, Any]:
        simulator_client = getattr(self.simulator, "client", None)
        return merge_llm_stats([self.client.stats()] + ([simulator_client.stats()] if simulator_client else []))

    def endpoints(self) -> list[dict[str, Any]]:
        return endpoint_stats_of(self.client, getattr(self.simulator, "client", None))

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.simulator.aclose()


def _units(spec: WorkSpec, db: Database, worker: str) -> Units:
    if spec.kind == "explain":
        return _ExplainUnits(spec, db, worker)
    from autointerp.executors.rescore_units import RescoreUnits

    return RescoreUnits(spec, db, worker)


def _claim(db: Database, spec: WorkSpec, worker: str, n: int) -> list[int]:
    with db.session() as session, session.begin():
        return leases.claim(session, spec.config_hash, spec.run_id, worker, n, spec.lease_s)


def _renew(db: Database, spec: WorkSpec, worker: str, feature_ids: list[int]) -> None:
    with db.session() as session, session.begin():
        leases.renew(session, spec.config_hash, worker, feature_ids, spec.lease_s)


def _release(db: Database, spec: WorkSpec, worker: str, feature_ids: list[int]) -> None:
    with db.session() as session, session.begin():
        leases.release(session, spec.config_hash, worker, feature_ids)


def _unfinished(db: Database, spec: WorkSpec) -> int:
    with db.session() as session:
        return leases.pool_state(session, spec.config_hash, spec.run_id).unfinished


class _Drain:
    """One drain of the lease pool: the features in flight, the errors they raised and the report the ledger
    gets, which answers whether to stop."""

    def __init__(self, spec: WorkSpec, ledger: Any, worker: str, db: Database, store: DatabaseThreads) -> None:
        self.spec, self.ledger, self.worker, self.db, self.store = spec, ledger, worker, db, store
        self.units: Units | None = None  # a worker that finds the pool empty loads no model
        self.stats = RunStats()
        self.report = WorkerReport(worker)
        self.held: dict[int, asyncio.Task] = {}
        self.errors: list[BaseException] = []
        self.stop = False
        self.last_sent = 0.0

    async def send(self, force: bool = False) -> None:
        """The counts so far to the ledger, at most every REPORT_EVERY_S unless forced; notes its answer to stop."""
        if not force and time.monotonic() - self.last_sent < REPORT_EVERY_S:
            return
        self.last_sent = time.monotonic()
        report, stats = self.report, self.stats
        report.done, report.failed, report.failures = stats.done, stats.failed, dict(stats.failures)
        if self.units is not None:
            report.llm, report.endpoints = self.units.llm_stats(), self.units.endpoints()
        self.stop = bool(await self.ledger.report.remote(report)) or self.stop

    async def do_feature(self, units: Units, feature_id: int) -> None:
        try:
            for outcome in await units.run(self.store, feature_id, self.stats):
                self.report.add_outcome(outcome, self.spec.opts.fail_fast)
        except leases.LeaseLost:
            self.report.lost += 1  # another worker owns the feature now; its result is the one kept
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self.held.pop(feature_id, None)
        await self.send()

    async def renew_leases(self) -> None:
        """Runs until cancelled: renews the held leases three times per lease period."""
        while True:
            await asyncio.sleep(self.spec.lease_s / 3)
            if self.held:
                await self.store.write(_renew, self.db, self.spec, self.worker, list(self.held))

    async def start_claimed(self) -> list[int]:
        """Claims features for the free slots and starts each; the ids claimed."""
        room = self.spec.opts.concurrency - len(self.held)
        claimed = (await self.store.write(_claim, self.db, self.spec, self.worker, min(room, self.spec.claim_size))
                   if room > 0 else [])
        if claimed and self.units is None:  # work appeared after drain's check (a rerun re-offered it)
            self.units = _units(self.spec, self.db, self.worker)
        for feature_id in claimed:
            assert self.units is not None
            self.held[feature_id] = asyncio.create_task(self.do_feature(self.units, feature_id))
        return claimed

    async def work(self) -> None:
        """Claim and do features until the pool is empty, the ledger says stop or a feature raised; the
        features already started finish (as in a local run), then the first error is raised."""
        while not self.stop and not self.errors:
            if await self.start_claimed():
                continue
            if self.held:
                await asyncio.wait(list(self.held.values()), return_when=asyncio.FIRST_COMPLETED)
            elif await self.store.read(_unfinished, self.db, self.spec) == 0:
                break
            else:  # other workers hold the rest: one of them may die, and its leases expire
                await asyncio.sleep(min(1.0, self.spec.lease_s / 4))
        if self.held:  # stopping (budget): features already started finish, as in a local run
            await asyncio.wait(list(self.held.values()))
        if self.errors:
            raise self.errors[0]

    async def close(self) -> None:
        """Cancel what is still running and give its leases back, send the final report, free the clients."""
        for task in self.held.values():
            task.cancel()
        if self.held:
            await self.store.write(_release, self.db, self.spec, self.worker, list(self.held))
        await self.send(force=True)
        if self.units is not None:
            await self.units.aclose()
        self.db.dispose()


async def drain(spec: WorkSpec, ledger: Any, worker: str) -> WorkerReport:
    """Claim and finish features until the pool is empty or the ledger says stop; the final report."""
    db = Database(spec.db_url)
    with DatabaseThreads() as store:
        run = _Drain(spec, ledger, worker, db, store)
        if await store.read(_unfinished, db, spec):
            # Before the first claim: building clients (loading a model) must not eat into a lease.
            run.units = _units(spec, db, worker)
        renewer = asyncio.create_task(run.renew_leases())
        try:
            await run.work()
        finally:
            renewer.cancel()
            await run.close()
    return run.report


async def finishing_pass(spec: WorkSpec, selection: list[int], ledger: Any) -> WorkerReport:
    """What the local run does once every feature is done (shuffled baselines, example scorers), done once by
    one worker after the pool drains. `selection`: every selected feature (explain) or explanation (rescore).
    Its counts go to the ledger as one more reporter."""
    db = Database(spec.db_url)
    stats = RunStats()
    report = WorkerReport("finishing pass")
    with DatabaseThreads() as store:
        if isinstance(spec.opts, ExplainOptions):
            client, simulator = make_clients(db, spec.opts)
            scorers = make_explain_scorers(db, spec.opts, client, simulator)
            clients = [client, getattr(simulator, "client", None), scorers.owned_judge]
            try:
                await finishing_passes(db, store, spec.opts, simulator, scorers, selection, spec.config, spec.run_id,
                                       stats)
            finally:
                await scorers.aclose()
                await client.aclose()
                await simulator.aclose()
        else:
            from autointerp.workflows.rescore_run import make_rescore_tools, rescore_finishing_passes

            maybe_simulator, scorers = make_rescore_tools(db, spec.opts)
            clients = [getattr(maybe_simulator, "client", None)]  # the judge's usage is absorbed into stats
            try:
                await rescore_finishing_passes(db, store, spec.opts, maybe_simulator, scorers, selection,
                                               spec.run_id, stats)
            finally:
                await scorers.aclose()
                if maybe_simulator is not None:
                    await maybe_simulator.aclose()
    db.dispose()
    report.done, report.failed, report.failures = stats.done, stats.failed, dict(stats.failures)
    report.skipped = stats.skipped
    report.llm = merge_llm_stats([c.stats() for c in clients if c is not None] + [llm_counters(stats.as_dict())])
    await ledger.report.remote(report)
    return report


class BatchWorker:
    """The actor (wrapped with ray.remote by the driver): one event loop per call, in its own process."""

    def __init__(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def pid(self) -> int:
        return os.getpid()

    def run(self, spec: WorkSpec, ledger: Any) -> WorkerReport:
        use_cache_dir(spec.cache_dir)
        with batch_collector():
            return asyncio.run(drain(spec, ledger, self.name))

    def finish(self, spec: WorkSpec, selection: list[int], ledger: Any) -> WorkerReport:
        use_cache_dir(spec.cache_dir)
        with batch_collector():
            return asyncio.run(finishing_pass(spec, selection, ledger))
