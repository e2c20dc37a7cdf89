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

from activations.records import FeatureRecords
from autointerp.executors.ledger import Outcome, WorkerReport
from autointerp.runtime.db_threads import DatabaseThreads
from autointerp.runtime.gc_tuning import batch_collector
from autointerp.runtime.run_stats import RunStats, llm_counters, merge_llm_stats
from autointerp.workflows.explain_run import explain_feature, finishing_passes, make_clients, make_explain_scorers
from autointerp.workflows.options import ExplainOptions, RescoreOptions
from llm_client.endpoints import endpoint_stats_of
from llm_client.local_models import use_cache_dir
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature
from storage.queue import leases
from storage.records import record_store

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


def _feature_with_records(db: Database, feature_id: int) -> tuple[Feature, FeatureRecords]:
    with db.session() as session:
        feature = repo.get_feature(session, feature_id)
        return feature, record_store.load_feature_records(session, feature)


class _ExplainUnits:
    def __init__(self, spec: WorkSpec, db: Database, worker: str) -> None:
        assert isinstance(spec.opts, ExplainOptions)
        self.spec, self.db, self.worker, self.opts = spec, db, worker, spec.opts
        self.client, self.simulator = make_clients(db, spec.opts)

    def _guard(self, session: Any, feature_id: int) -> None:
        leases.finish(session, self.spec.config_hash, self.worker, feature_id)

    async def run(self, store: DatabaseThreads, feature_id: int, stats: RunStats) -> list[Outcome]:
        feature, records = await store.read(_feature_with_records, self.db, feature_id)
        outcome = await explain_feature(self.db, store, self.opts, self.client, self.simulator, feature,
                                        self.spec.config, self.spec.run_id, stats, records, guard=self._guard)
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


async def drain(spec: WorkSpec, ledger: Any, worker: str) -> WorkerReport:
    """Claim and finish features until the pool is empty or the ledger says stop; the final report."""
    db = Database(spec.db_url)
    units: Units | None = None  # a worker that finds the pool empty loads no model
    stats = RunStats()
    report = WorkerReport(worker)
    held: dict[int, asyncio.Task] = {}
    errors: list[BaseException] = []
    stop = False
    last_sent = 0.0

    async def send(force: bool = False) -> None:
        nonlocal stop, last_sent
        if not force and time.monotonic() - last_sent < REPORT_EVERY_S:
            return
        last_sent = time.monotonic()
        report.done, report.failed, report.failures = stats.done, stats.failed, dict(stats.failures)
        if units is not None:
            report.llm, report.endpoints = units.llm_stats(), units.endpoints()
        stop = bool(await ledger.report.remote(report)) or stop

    async def one(store: DatabaseThreads, units: Units, feature_id: int) -> None:
        try:
            for outcome in await units.run(store, feature_id, stats):
                report.add_outcome(outcome, spec.opts.fail_fast)
        except leases.LeaseLost:
            report.lost += 1  # another worker owns the feature now; its result is the one kept
        except Exception as exc:
            errors.append(exc)
        finally:
            held.pop(feature_id, None)
        await send()

    async def renew(store: DatabaseThreads) -> None:
        while True:
            await asyncio.sleep(spec.lease_s / 3)
            if held:
                await store.write(_renew, db, spec, worker, list(held))

    with DatabaseThreads() as store:
        if await store.read(_unfinished, db, spec):
            # Before the first claim: building clients (loading a model) must not eat into a lease.
            units = _units(spec, db, worker)
        renewer = asyncio.create_task(renew(store))
        try:
            while not stop and not errors:
                room = spec.opts.concurrency - len(held)
                claimed = await store.write(_claim, db, spec, worker, min(room, spec.claim_size)) if room > 0 else []
                if claimed and units is None:  # work appeared after the check above (a rerun re-offered it)
                    units = _units(spec, db, worker)
                for feature_id in claimed:
                    assert units is not None
                    held[feature_id] = asyncio.create_task(one(store, units, feature_id))
                if claimed:
                    continue
                if held:
                    await asyncio.wait(list(held.values()), return_when=asyncio.FIRST_COMPLETED)
                elif await store.read(_unfinished, db, spec) == 0:
                    break
                else:  # other workers hold the rest: one of them may die, and its leases expire
                    await asyncio.sleep(min(1.0, spec.lease_s / 4))
            if held:  # stopping (budget): features already started finish, as in a local run
                await asyncio.wait(list(held.values()))
            if errors:
                raise errors[0]
        finally:
            renewer.cancel()
            for task in held.values():
                task.cancel()
            if held:
                await store.write(_release, db, spec, worker, list(held))
            await send(force=True)
            if units is not None:
                await units.aclose()
            db.dispose()
    return report


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
