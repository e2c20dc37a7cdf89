"""`explain` as a batch: every selected feature explained, best-of-N chosen, simulated and scored, each
feature committed on its own, so a crash loses only the features in flight and a rerun skips the rest."""

from __future__ import annotations

import asyncio

from activations.records import FeatureRecords
from autointerp.pipeline.context import llm_cache_path, select_features
from autointerp.pipeline.feature_work import FeatureOutcome, explain_and_score
from autointerp.pipeline.options import ExplainOptions
from autointerp.pipeline.progress import RunTracker, merge_llm_stats
from autointerp.pipeline.sanity import add_sanity_baselines
from explainer import PROMPT_VERSIONS
from llm_client import make_client
from simulator.factory import make_simulator
from storage import outcome_store
from storage import repository as repo
from storage.db import Database
from storage.schema import Feature


def _save_outcome(db: Database, feature_id: int, outcome: FeatureOutcome, opts: ExplainOptions, config: dict,
                  run_id: int, retry: bool) -> None:
    with db.session() as session, session.begin():
        feature = session.get(Feature, feature_id)
        chash = repo.config_hash(config)
        if retry:
            outcome_store.forget_feature_results(session, feature_id, chash)
        rows = outcome_store.store_candidates(session, feature, outcome.candidates, config=config, run_id=run_id,
                                              selected=outcome.selected)
        if outcome.selected is None or outcome.test is None:
            return
        chosen = next(r for r in rows if r.candidate == outcome.selected)
        if outcome.valid_scores:
            chosen.params = {**(chosen.params or {}), "valid_ev_correlation": outcome.valid_scores}
        test, data = outcome.test, outcome.test_input
        simulation = outcome_store.store_simulation(
            session, chosen, feature, simulator=opts.simulator, config={"simulator": opts.simulator, "split": "test"},
            record_ids=data.record_ids if data else [], splits=data.splits if data else [],
            simulations=test.simulations, failure=test.failure, run_id=run_id,
        )
        if test.simulations is not None:
            outcome_store.store_scores(session, chosen, feature, simulation, test.scores, simulator=opts.simulator,
                                       run_id=run_id)


async def _run(db: Database, opts: ExplainOptions, run_id: int, features: list[Feature], config: dict,
               tracker: RunTracker, all_feature_ids: list[int]) -> None:
    client = make_client(opts.explainer, base_url=opts.base_url, concurrency=opts.concurrency,
                         cache_path=llm_cache_path(db), device=opts.device, timeout_s=opts.request_timeout_s)
    simulator = make_simulator(opts.simulator, base_url=opts.simulator_base_url or opts.base_url, device=opts.device,
                               concurrency=opts.concurrency, cache_path=llm_cache_path(db))
    gate = asyncio.Semaphore(opts.concurrency)
    budget_hit = asyncio.Event()
    simulator_client = getattr(simulator, "client", None)

    def llm_stats() -> dict:
        """Explainer and LLM-simulator calls together: both spend the budget."""
        return merge_llm_stats([client.stats()] + ([simulator_client.stats()] if simulator_client else []))

    async def work(feature: Feature) -> None:
        async with gate:
            if budget_hit.is_set():
                return
            tracker.stats.in_flight += 1
            try:
                await _one(feature)
            finally:
                tracker.stats.in_flight -= 1
                tracker.refresh(llm_stats=llm_stats)
                if opts.budget_usd is not None and tracker.stats.cost_usd >= opts.budget_usd:
                    if not budget_hit.is_set():
                        tracker.stats.stopped_reason = f"budget of ${opts.budget_usd} reached"
                    budget_hit.set()

    async def _one(feature: Feature) -> None:
        with db.session() as session:
            row = session.get(Feature, feature.id)
            pairs = repo.load_records(session, row)
            fr = FeatureRecords(repo.feature_id_of(row), [r for _, r in pairs], repo.stats_of(row))
        # Dead features come back failed from the explainer (nothing above zero) without an LLM call.
        outcome = await explain_and_score(
            fr, [rid for rid, _ in pairs], client, simulator, fmt=opts.fmt, n_candidates=opts.n_candidates,
            polarity=opts.polarity, temperature=opts.effective_temperature, max_tokens=opts.max_explanation_tokens,
            seed=opts.seed,
        )
        _save_outcome(db, feature.id, outcome, opts, config, run_id, retry=opts.retry_failed)
        if outcome.failure:
            tracker.record_failure(feature.index, outcome.failure)
        else:
            tracker.stats.done += 1

    try:
        await asyncio.gather(*(work(f) for f in features))
        if opts.sanity and not budget_hit.is_set():
            with db.session() as session:
                # All selected features, not only this run's: a killed earlier run may have missed its baselines.
                own = outcome_store.scored_explanations(session, all_feature_ids, config_hash=repo.config_hash(config))
            await add_sanity_baselines(db, simulator, opts.simulator, own, run_id=run_id, seed=opts.seed)
        tracker.refresh(force=True, llm_stats=llm_stats)
    finally:
        await client.aclose()
        await simulator.aclose()


def run_explain(db: Database, opts: ExplainOptions, *, show_progress: bool = True) -> int:
    """Run (or resume) an explain batch; returns the run id. Finished features are skipped without LLM
    calls; with `retry_failed`, features recorded as failed are done again."""
    config = opts.explain_config(PROMPT_VERSIONS[opts.fmt])
    chash = repo.config_hash(config)
    with db.session() as session, session.begin():
        features = select_features(session, opts.model, opts.layer, opts.sae, opts.features)
        finished = outcome_store.finished_features(session, [f.id for f in features], chash)
        run_id = repo.start_run(session, "explain", {**opts.as_dict(), "config_hash": chash}).id
    redo = {"failed"} if opts.retry_failed else set()
    todo = [f for f in features if finished.get(f.id) is None or finished[f.id] in redo]
    with RunTracker(db, run_id, total=len(features), show=show_progress) as tracker:
        tracker.stats.skipped = len(features) - len(todo)
        asyncio.run(_run(db, opts, run_id, todo, config, tracker, [f.id for f in features]))
    return run_id
