"""`rescore` as a batch: score existing explanations with another simulator. Old scores stay; a
simulation already made with this simulator is skipped, so reruns are free."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from autointerp.pipeline.context import llm_cache_path, select_features
from autointerp.pipeline.feature_work import score, scoring_input, simulate
from autointerp.pipeline.options import OptionsError, RescoreOptions
from autointerp.pipeline.progress import RunTracker
from autointerp.pipeline.sanity import add_sanity_baselines
from simulator.factory import make_simulator
from storage import outcome_store
from storage import repository as repo
from storage.db import Database
from storage.schema import Explanation, Feature, Simulation


def _simulation_config(opts: RescoreOptions) -> dict:
    return {"simulator": opts.simulator, "split": "test"}


async def _rescore(db: Database, opts: RescoreOptions, run_id: int, explanation_ids: list[int], all_ids: list[int],
                   tracker: RunTracker) -> None:
    simulator = make_simulator(opts.simulator, base_url=opts.simulator_base_url, device=opts.device,
                               concurrency=opts.concurrency, cache_path=llm_cache_path(db))
    gate = asyncio.Semaphore(opts.concurrency)

    async def one(explanation_id: int) -> None:
        async with gate:
            with db.session() as session:
                explanation = session.get(Explanation, explanation_id)
                feature = session.get(Feature, explanation.feature_id)
                pairs = repo.load_records(session, feature)
                text, polarity, index = explanation.text or "", explanation.polarity, feature.index
            data = scoring_input(pairs, "test", feature.max_activation or 0.0, polarity)
            outcome = await simulate(simulator, text, data)
            with db.session() as session, session.begin():
                explanation = session.get(Explanation, explanation_id)
                feature = session.get(Feature, explanation.feature_id)
                simulation = outcome_store.store_simulation(
                    session, explanation, feature, simulator=opts.simulator, config=_simulation_config(opts),
                    record_ids=data.record_ids, splits=data.splits, simulations=outcome.simulations,
                    failure=outcome.failure, run_id=run_id,
                )
                if outcome.simulations is not None:
                    outcome_store.store_scores(session, explanation, feature, simulation,
                                               score(data, outcome.simulations, seed=opts.seed),
                                               simulator=opts.simulator, run_id=run_id)
            if outcome.failure:
                tracker.record_failure(index, f"simulation failed: {outcome.failure}")
            else:
                tracker.stats.done += 1
            tracker.refresh()

    try:
        await asyncio.gather(*(one(e) for e in explanation_ids))
        if opts.sanity:
            # Every selected explanation, not only this run's: an interrupted run may have missed baselines.
            await add_sanity_baselines(db, simulator, opts.simulator, all_ids, run_id=run_id, seed=opts.seed)
    finally:
        await simulator.aclose()


def run_rescore(db: Database, opts: RescoreOptions, *, show_progress: bool = True) -> int:
    """Score the selected explanations of a layer's features with `opts.simulator`; returns the run id."""
    config = _simulation_config(opts)
    with db.session() as session, session.begin():
        features = select_features(session, opts.model, opts.layer, opts.sae, opts.features)
        explanation_ids = outcome_store.scored_explanations(session, [f.id for f in features], explainer=opts.explainer)
        if not explanation_ids:
            who = f" by {opts.explainer}" if opts.explainer else ""
            raise OptionsError(f"no explanations{who} for the selected features of layer {opts.layer}; run `autointerp explain` first")
        done = set(session.scalars(select(Simulation.explanation_id).where(
            Simulation.explanation_id.in_(explanation_ids), Simulation.simulator == opts.simulator,
            Simulation.role == "own", Simulation.status == "ok")))
        run_id = repo.start_run(session, "rescore", {**opts.as_dict(), "simulation_config": config}).id
    todo = [e for e in explanation_ids if e not in done]
    with RunTracker(db, run_id, total=len(explanation_ids), show=show_progress, label="explanations") as tracker:
        tracker.stats.skipped = len(explanation_ids) - len(todo)
        asyncio.run(_rescore(db, opts, run_id, todo, explanation_ids, tracker))
    return run_id
