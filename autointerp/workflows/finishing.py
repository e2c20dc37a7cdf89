"""The passes that run once after a batch's per-feature work, explain and rescore alike: the shuffled-explanation
baselines (when the run simulates) and the example scorers, over every selected explanation, not only this
run's (an interrupted run may have missed them). Both passes run per explanation on one read of its feature's
records, a chunk of explanations at a time. A distributed run calls this once."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from activations.vocab import ScoreRole
from autointerp.runtime.bounded import bounded
from autointerp.runtime.db_threads import ChunkedReads, DatabaseThreads
from autointerp.runtime.run_stats import RunStats
from autointerp.workflows.example_scoring import RunScorers, ScoringReport, add_example_scores, scorer_checks
from autointerp.workflows.finishing_reads import CHUNK, FinishingQuestions, read_targets
from autointerp.workflows.shuffled_baselines import LayerPools, add_shuffled_baseline
from simulator.base import Simulator
from storage.core.db import Database


async def finish_batch(db: Database, store: DatabaseThreads, explanation_ids: Sequence[int], *,
                       simulator: Simulator | None, simulator_spec: str, run_scorers: RunScorers,
                       shuffled_baseline: bool,
                       seed: int, concurrency: int, calibrate: bool, run_id: int,
                       stats: RunStats) -> ScoringReport | None:
    """Baselines under `simulator` (None: the run does not simulate) and the scores each explanation lacks from
    the run's example scorers (only explanations lacking this scorer configuration's scores, or whose last try
    failed); their failures are counted in `stats`. Up to `concurrency` explanations at once, each taking both
    passes in turn. Returns the scorers' report, None when none ran."""
    baselines = simulator is not None and shuffled_baseline
    scorers = run_scorers.scorers
    if not baselines and scorers is None:
        return None
    questions = FinishingQuestions(simulator_spec if baselines else None,
                                   scorer_checks(scorers, shuffled_baseline) if scorers is not None else ())
    if scorers is not None:
        # Steering hooks the subject model: every feature it needs is steered first, while nothing else runs.
        for steered in (scorers.steering, scorers.intervention):
            if steered is not None:
                await steered.prepare(explanation_ids, run_id)
    targets = ChunkedReads(store, partial(read_targets, db, questions=questions), explanation_ids, CHUNK)
    pools = LayerPools(db, store)
    report = ScoringReport()

    async def one(position: int) -> None:
        target = await targets.get(position)
        if target is None:  # lacks nothing: its records were not read
            return
        if target.baseline and simulator is not None:
            layer = await pools.of(target.feature, seed, target.polarity)
            await add_shuffled_baseline(db, store, simulator, simulator_spec, target, layer, run_id=run_id, seed=seed,
                                        calibrate=calibrate)
        if target.todo and scorers is not None:
            shuffles = any(role == ScoreRole.SHUFFLED for _, role in target.todo)
            pool = await pools.of(target.feature, scorers.seed, target.polarity) if shuffles else None
            failure = await add_example_scores(db, store, scorers, target, pool, run_id=run_id)
            report.scored += 1
            if failure is not None:
                report.failures[target.feature.index] = failure

    await bounded(len(explanation_ids), concurrency, one)
    if scorers is None:
        return None
    for index, reason in report.failures.items():
        stats.record_failure(index, reason)
    return report
