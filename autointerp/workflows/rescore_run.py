"""`rescore` as a batch: score existing explanations with another simulator and/or the example scorers
(detection, fuzzing, embedding). Old scores stay; an explanation already scored with this simulator under the
current scoring version, or a scorer's scores already made under its configuration, are skipped, so reruns are
free. A simulation stored under an older scoring version is scored again from its stored values (no LLM call)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy.orm import Session

from activations.vocab import DataSplit, RunKind, ScoreMethod, ScorerName
from autointerp.runtime.bounded import bounded
from autointerp.runtime.db_threads import DatabaseThreads
from autointerp.runtime.fail_fast import FailFast
from autointerp.runtime.gc_tuning import batch_collector
from autointerp.runtime.interrupts import sigterm_interrupts
from autointerp.runtime.progress import ProgressDisplay
from autointerp.runtime.response_cache import llm_cache_path
from autointerp.runtime.run_record import RunRecord
from autointerp.runtime.run_stats import RunStats
from autointerp.workflows.example_scoring import RunScorers, make_run_scorers
from autointerp.workflows.finishing import finish_batch
from autointerp.workflows.options import OptionsError, RescoreOptions
from autointerp.workflows.selection import check_credentials, select_features
from llm_client.endpoints import endpoint_stats_of
from scorer import CALIBRATED_METHODS, simulation_config, simulation_scorer_config
from scorer.evaluate import SimulationOutcome, evaluate_on
from scorer.scored_set import ScoringInput, reported_input, scoring_input
from simulator.base import SequenceSimulation, Simulator
from simulator.factory import make_simulator
from storage.core import repository as repo
from storage.core.db import Database
from storage.reads.stored_simulations import stored_expected_values
from storage.records import record_store
from storage.results import already_done, outcome_store


@dataclass
class _Target:
    """An explanation to rescore: what the simulator needs, read off the event loop."""

    explanation_id: int
    feature_index: int
    text: str
    polarity: str
    data: ScoringInput
    valid: ScoringInput  # what --calibrate fits on
    stored: list[SequenceSimulation] | None  # this simulator's stored simulation of `data`, scored again as it is


def _stored_simulation(session: Session, explanation_id: int, feature_id: int, simulator: str, polarity: str,
                       data: ScoringInput) -> list[SequenceSimulation] | None:
    """The stored simulation of exactly these records (it may be from before a scoring version change)."""
    stored = stored_expected_values(session, explanation_id, feature_id, simulation_config(simulator, polarity))
    if stored is None or [record_id for record_id, _ in stored] != [r.record_id for r in data.records]:
        return None
    return [SequenceSimulation(list(r.tokens), expected) for r, (_, expected) in zip(data.records, stored)]


def _load(db: Database, explanation_id: int, simulator: str) -> _Target:
    with db.session() as session:
        explanation = repo.get_explanation(session, explanation_id)
        feature = repo.get_feature(session, explanation.feature_id)
        records = record_store.load_feature_records(session, feature)
        data = reported_input(records, explanation.polarity)
        return _Target(explanation_id, feature.index, explanation.text or "", explanation.polarity, data,
                       scoring_input(records, DataSplit.VALID, explanation.polarity),
                       _stored_simulation(session, explanation_id, feature.id, simulator, explanation.polarity, data))


def _evaluation(opts: RescoreOptions, target: _Target, outcome: SimulationOutcome,
                calibrate_only: bool) -> outcome_store.Evaluation:
    """The simulation and its scores; with `calibrate_only` (simulated before, without --calibrate) only the
    calibrated scores."""
    if calibrate_only:
        calibrated = [s for s in outcome.scores if s.method in CALIBRATED_METHODS]
        return outcome_store.Evaluation(opts.simulator, simulation_scorer_config(), calibrated)
    simulation = outcome_store.SimulationToStore(simulation_config(opts.simulator, target.polarity),
                                                 target.data.records, outcome.simulations, outcome.failure,
                                                 outcome.failure_kind)
    return outcome_store.Evaluation(opts.simulator, simulation_scorer_config(), outcome.scores, simulation)


def _save(db: Database, opts: RescoreOptions, target: _Target, outcome: SimulationOutcome, run_id: int,
          calibrate_only: bool, guard: Callable[[Session], None] | None = None) -> None:
    """One explanation's evaluation in one transaction. `guard` runs first in it (a distributed worker checks its
    lease)."""
    evaluation = _evaluation(opts, target, outcome, calibrate_only)
    with db.session() as session, session.begin():
        if guard is not None:
            guard(session)
        explanation = repo.get_explanation(session, target.explanation_id)
        feature = repo.get_feature(session, explanation.feature_id)
        outcome_store.save_evaluation(session, explanation, feature, evaluation, run_id=run_id)


def make_rescore_tools(db: Database, opts: RescoreOptions) -> tuple[Simulator | None, RunScorers]:
    """The simulator (None when the simulation scorer is not asked for) and the example scorers of a rescore."""
    simulates = ScorerName.SIMULATION in opts.scorer_names()
    simulator = make_simulator(opts.simulator, base_url=opts.simulator_base_url, device=opts.device,
                               concurrency=opts.concurrency, cache_path=llm_cache_path(db)) if simulates else None
    run_scorers = make_run_scorers(
        opts.scorer_names(), opts.judge_spec(), judge_base_url=opts.scorer_base_url, concurrency=opts.concurrency,
        device=opts.device, cache_path=llm_cache_path(db), per_prompt=opts.scorer_examples, seed=opts.seed,
        simulator=simulator, db=db, subject_model=opts.model, steering_target_kl=opts.steering_target_kl)
    check_credentials(getattr(simulator, "client", None), run_scorers.owned_judge)
    return simulator, run_scorers


async def rescore_explanation(db: Database, store: DatabaseThreads, opts: RescoreOptions, simulator: Simulator,
                              explanation_id: int, run_id: int, stats: RunStats, *, calibrate_only: bool = False,
                              guard: Callable[[Session], None] | None = None) -> SimulationOutcome:
    """Simulate (or reuse the stored simulation), score and store one explanation (one transaction), counted in
    `stats`; returns the outcome."""
    target = await store.read(_load, db, explanation_id, opts.simulator)
    outcome = await evaluate_on(simulator, target.text, target.data, valid=target.valid if opts.calibrate else None,
                                seed=opts.seed, simulations=target.stored)
    await store.write(_save, db, opts, target, outcome, run_id, calibrate_only, guard)
    stats.record_outcome(target.feature_index, True, outcome.failure and f"simulation failed: {outcome.failure}",
                         outcome.failure_kind)
    return outcome


async def rescore_finishing_passes(db: Database, store: DatabaseThreads, opts: RescoreOptions,
                                   simulator: Simulator | None, run_scorers: RunScorers, all_ids: list[int],
                                   run_id: int, stats: RunStats) -> None:
    """After the simulations: shuffled baselines and the example scorers over every selected explanation (not
    only this run's: an interrupted run may have missed them). A distributed run calls it once."""
    report = await finish_batch(db, store, all_ids, simulator=simulator, simulator_spec=opts.simulator,
                                run_scorers=run_scorers, shuffled_baseline=opts.shuffled_baseline, seed=opts.seed,
                                concurrency=opts.concurrency, calibrate=opts.calibrate, run_id=run_id, stats=stats)
    if report is not None:
        if simulator is None:
            stats.done, stats.skipped = report.scored - len(report.failures), len(all_ids) - report.scored
        if run_scorers.owned_judge is not None and run_scorers.owned_judge.stats().get("requests"):
            stats.absorb_llm(run_scorers.owned_judge.stats())  # a judge that was never asked has no cost to report


async def _rescore(db: Database, opts: RescoreOptions, record: RunRecord, display: ProgressDisplay,
                   explanation_ids: list[int], all_ids: list[int], simulated_before: set[int] | None = None) -> None:
    simulator, run_scorers = make_rescore_tools(db, opts)
    stats = record.stats
    fail_fast = FailFast(opts.fail_fast)

    async def one(store: DatabaseThreads, position: int) -> None:
        assert simulator is not None
        if stats.run_failed:
            return
        explanation_id = explanation_ids[position]
        outcome = await rescore_explanation(db, store, opts, simulator, explanation_id, record.run_id, stats,
                                            calibrate_only=explanation_id in (simulated_before or set()))
        reason = fail_fast.observe(outcome.failure, outcome.failure_kind)
        if reason is not None:
            stats.fail_run(reason)
        display.show_stats(stats)
        if record.save_due():
            record.details["endpoints"] = endpoint_stats_of(getattr(simulator, "client", None))
            await store.write(record.save)

    try:
        with DatabaseThreads() as store:
            if simulator is not None:
                await bounded(len(explanation_ids), opts.concurrency, partial(one, store))
                record.details["endpoints"] = endpoint_stats_of(getattr(simulator, "client", None))
            if not stats.run_failed:
                await rescore_finishing_passes(db, store, opts, simulator, run_scorers, all_ids, record.run_id, stats)
            display.show_stats(stats)
    finally:
        await run_scorers.aclose()
        if simulator is not None:
            await simulator.aclose()


def rescored(session: Session, explanation_ids: list[int], simulator: str) -> set[int]:
    """Those of these explanations simulated by `simulator` under the current simulation configuration and scored
    under the current scoring version (an older simulation or older scores do not count: those are done again).
    Each polarity's explanations are asked about under its own simulation configuration."""
    polarities = repo.explanation_polarities(session, explanation_ids)
    simulated = {e for polarity in set(polarities.values()) for e in already_done.simulated_with(
        session, [e for e in explanation_ids if polarities[e] == polarity], simulator=simulator,
        config=simulation_config(simulator, polarity))}
    return simulated & already_done.scored_with(session, explanation_ids, simulator=simulator,
                                                method=ScoreMethod.EV_CORRELATION,
                                                scorer_config=simulation_scorer_config())


@dataclass
class RescorePlan:
    explanation_ids: list[int]  # every selected explanation (baselines and example scorers cover them all)
    todo: list[int]  # explanations to simulate now
    simulated_before: set[int]  # simulated before without --calibrate: only their calibrated scores are added


def plan_rescore(db: Database, opts: RescoreOptions) -> RescorePlan:
    """What a rescore has to do; a clear error when there is nothing to rescore."""
    opts.judge_spec()  # a missing judge is an error before any work
    with db.session() as session:
        features = select_features(session, opts.model, opts.layer, opts.sae, opts.features)
        explanation_ids = outcome_store.scored_explanations(session, [f.id for f in features], explainer=opts.explainer)
        if not explanation_ids:
            who = f" by {opts.explainer}" if opts.explainer else ""
            raise OptionsError(f"no explanations{who} for the selected features of layer {opts.layer}; "
                               "run `autointerp explain` first")
        done = rescored(session, explanation_ids, opts.simulator)
        # --calibrate: explanations scored before without it get their calibrated scores added.
        calibrated = already_done.scored_with(session, explanation_ids, simulator=opts.simulator,
                                              method=ScoreMethod.RSQUARED_CALIBRATED,
                                              scorer_config=simulation_scorer_config()) if opts.calibrate else set()
    simulated_before = {e for e in done if e not in calibrated} if opts.calibrate else set()
    todo = [e for e in explanation_ids if e not in done or e in simulated_before] \
        if ScorerName.SIMULATION in opts.scorer_names() else []
    return RescorePlan(explanation_ids, todo, simulated_before)


def run_rescore(db: Database, opts: RescoreOptions, *, run_id: int | None = None, show_progress: bool = True) -> int:
    """Score the current explanations of a layer's features with `opts.simulator`; returns the run id.
    With `run_id`, the run row already exists (the API made it)."""
    config = simulation_config(opts.simulator)
    plan = plan_rescore(db, opts)
    explanation_ids, todo = plan.explanation_ids, plan.todo
    run_config = {**opts.as_dict(), "simulation_config": config, "scorer_config": simulation_scorer_config()}
    with sigterm_interrupts(), RunRecord(db, RunKind.RESCORE, run_config, run_id=run_id,
                                         total=len(explanation_ids)) as record, \
            ProgressDisplay(len(explanation_ids), label="explanations", unit="expl", show=show_progress) as display:
        record.stats.skipped = len(explanation_ids) - len(todo)
        with batch_collector():
            asyncio.run(_rescore(db, opts, record, display, todo, explanation_ids, plan.simulated_before))
    return record.run_id
