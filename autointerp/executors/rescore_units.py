"""How a rescore worker does one claimed feature: simulate and score each of its explanations that the plan
lists, each in its own transaction that first checks the lease (the feature's last one also finishes it)."""

from __future__ import annotations

from typing import Any

from autointerp.executors.batch_worker import WorkSpec
from autointerp.executors.ledger import Outcome
from autointerp.runtime.db_threads import DatabaseThreads
from autointerp.runtime.response_cache import llm_cache_path
from autointerp.runtime.run_stats import RunStats
from autointerp.workflows.options import RescoreOptions
from autointerp.workflows.rescore_run import rescore_explanation
from llm_client.endpoints import endpoint_stats_of
from simulator.factory import make_simulator
from storage.core.db import Database
from storage.queue import leases


class RescoreUnits:
    def __init__(self, spec: WorkSpec, db: Database, worker: str) -> None:
        assert isinstance(spec.opts, RescoreOptions)
        self.spec, self.db, self.worker, self.opts = spec, db, worker, spec.opts
        # Only the simulator: the example scorers run once, in the finishing pass.
        self.simulator = make_simulator(spec.opts.simulator, base_url=spec.opts.simulator_base_url,
                                        device=spec.opts.device, concurrency=spec.opts.concurrency,
                                        cache_path=llm_cache_path(db))

    async def run(self, store: DatabaseThreads, feature_id: int, stats: RunStats) -> list[Outcome]:
        spec, todo = self.spec, self.spec.explanations[feature_id]
        outcomes: list[Outcome] = []
        for i, explanation_id in enumerate(todo):
            last = i == len(todo) - 1

            def guard(session: Any, last: bool = last) -> None:
                if last:
                    leases.finish(session, spec.config_hash, self.worker, feature_id)
                else:
                    leases.check_held(session, spec.config_hash, self.worker, feature_id)

            outcome = await rescore_explanation(self.db, store, self.opts, self.simulator, explanation_id,
                                                spec.run_id, stats, guard=guard,
                                                calibrate_only=explanation_id in spec.simulated_before)
            outcomes.append((outcome.failure, outcome.failure_kind))
        return outcomes

    def llm_stats(self) -> dict[str, Any]:
        client = getattr(self.simulator, "client", None)
        return client.stats() if client is not None else {}

    def endpoints(self) -> list[dict[str, Any]]:
        return endpoint_stats_of(getattr(self.simulator, "client", None))

    async def aclose(self) -> None:
        await self.simulator.aclose()
