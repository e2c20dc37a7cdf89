"""The passes that run once after a batch's per-feature work, explain and rescore alike: the shuffled-explanation
baselines (when the run simulates) and the example scorers, over every selected explanation, not only this
run's (an interrupted run may have missed them). A distributed run calls this once."""

from __future__ import annotations

from collections.abc import Sequence

from autointerp.runtime.db_threads import DatabaseThreads
from autointerp.runtime.run_stats import RunStats
from autointerp.workflows.example_scoring import RunScorers, ScoringReport, add_example_scores
from autointerp.workflows.shuffled_baselines import add_shuffled_baselines
from simulator.base import Simulator
from storage.core.db import Database


async def finish_batch(db: Database, store: DatabaseThreads, explanation_ids: Sequence[int], *,
                       simulator: Simulator | None, simulator_spec: str, run_scorers: RunScorers,
                       shuffled_baseline: bool,
                       seed: int, concurrency: int, calibrate: bool, run_id: int,
                       stats: RunStats) -> ScoringReport | None:
    """Baselines under `simulator` (None: the run does not simulate) and the scores each explanation lacks from
    the run's example scorers (only explanations lacking this scorer configuration's scores, or whose last try
    failed); their failures are counted in `stats`. Returns the scorers' report, None when none ran."""
    if simulator is not None and shuffled_baseline:
        await add_shuffled_baselines(db, store, simulator, simulator_spec, explanation_ids, run_id=run_id,
                                     seed=seed, concurrency=concurrency, calibrate=calibrate)
    if run_scorers.scorers is None:
        return None
    report = await add_example_scores(db, store, run_scorers.scorers, explanation_ids, run_id=run_id,
                                      shuffled_baseline=shuffled_baseline, concurrency=concurrency)
    for index, reason in report.failures.items():
        stats.record_failure(index, reason)
    return report
