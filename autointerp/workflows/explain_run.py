"""`explain` as a batch: every selected feature explained, best-of-N chosen, simulated and scored, each
feature committed on its own, so a crash loses only the features in flight and a rerun skips the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.orm import Session

from activations.records import FeatureRecords, NeighbourWindow
from activations.vocab import Polarity, RunKind, SampleKind, ScorerName
from autointerp.runtime.bounded import bounded
from autointerp.runtime.db_threads import ChunkedReads, DatabaseThreads
from autointerp.runtime.fail_fast import FailFast
from autointerp.runtime.gc_tuning import batch_collector
from autointerp.runtime.interrupts import sigterm_interrupts
from autointerp.runtime.progress import ProgressDisplay
from autointerp.runtime.response_cache import llm_cache_path
from autointerp.runtime.run_record import RunRecord
from autointerp.runtime.run_stats import RunStats, merge_llm_stats
from autointerp.workflows.example_scoring import RunScorers, make_run_scorers
from autointerp.workflows.feature_work import FeatureOutcome, explain_and_score
from autointerp.workflows.finishing import finish_batch
from autointerp.workflows.options import ExplainOptions, OptionsError
from autointerp.workflows.selection import check_credentials, select_features
from autointerp.workflows.steering_evidence import check_steering_stored, steering_inputs
from explainer.contrast import Contrast
from explainer.evidence import StoredSteering
from llm_client import make_client
from llm_client.base import LLMClient
from llm_client.endpoints import endpoint_stats_of
from scorer import simulation_config, simulation_scorer_config
from scorer.scored_set import side_sample
from simulator.base import Simulator
from simulator.factory import make_simulator
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Feature
from storage.reads.contrast_windows import contrast_windows_of
from storage.records import record_store
from storage.results import already_done, outcome_store

# Runs inside a feature's save transaction before anything is written; raising aborts the save (a distributed
# worker checks there that it still holds the feature's lease).
SaveGuard = Callable[[Session, int], None]
LOAD_CHUNK = 32  # features whose records are read in one query, the next chunk ahead of the explainer


def _evaluation(outcome: FeatureOutcome, opts: ExplainOptions) -> outcome_store.Evaluation | None:
    """The winner's evaluation on the test split; None when the simulation scorer was not asked for."""
    test, data = outcome.test, outcome.test_input
    if test is None:
        return None
    simulation = outcome_store.SimulationToStore(
        simulation_config(opts.simulator, opts.polarity), data.records if data else [], test.simulations, test.failure,
        test.failure_kind)
    params = {"valid_ev_correlation": outcome.valid_scores} if outcome.valid_scores else {}
    return outcome_store.Evaluation(opts.simulator, simulation_scorer_config(), test.scores, simulation, params)


def _save_outcome(db: Database, feature: repo.FeatureKeyed, outcome: FeatureOutcome, opts: ExplainOptions,
                  config: dict, run_id: int, guard: SaveGuard | None = None) -> bool:
    """Store one feature's outcome in one transaction; False when another run had stored it first (nothing of
    this run's is written then)."""
    with db.session() as session, session.begin():
        if guard is not None:
            guard(session, feature.id)
        return outcome_store.save_explained(session, feature, outcome.candidates, selected=outcome.selected,
                                            config=config, run_id=run_id, evaluation=_evaluation(outcome, opts))


# A feature's records, (contrastive mode only) its neighbours' windows the explainer may show, and (steering
# evidence only) its stored steering.
FeatureInput = tuple[FeatureRecords, list[NeighbourWindow] | None, StoredSteering | None]


def load_inputs(session: Session, features: Sequence[Feature], opts: ExplainOptions) -> dict[int, FeatureInput]:
    """What explaining each of `features` reads, by feature row id."""
    records = record_store.load_many_feature_records(session, features)
    windows = contrast_windows_of(session, features, sample=side_sample(opts.polarity)) if opts.contrastive() else {}
    steering = steering_inputs(session, features, opts)
    return {fid: (fr, windows.get(fid), steering.get(fid)) for fid, fr in records.items()}


def _load_many(db: Database, opts: ExplainOptions, feature_ids: Sequence[int]) -> dict[int, FeatureInput]:
    with db.session() as session:
        return load_inputs(session, repo.get_features(session, feature_ids), opts)


def _scored_explanations(db: Database, feature_ids: list[int], config: dict) -> list[int]:
    with db.session() as session:
        return outcome_store.scored_explanations(session, feature_ids, config_hash=repo.config_hash(config))


def make_clients(db: Database, opts: ExplainOptions) -> tuple[LLMClient, Simulator]:
    """The explainer's client and the simulator an explain run uses; OptionsError when one of them could not
    authorise a single request (no API key), before any feature is tried."""
    client = make_client(opts.explainer, base_url=opts.base_url, concurrency=opts.concurrency,
                         cache_path=llm_cache_path(db), device=opts.device, timeout_s=opts.request_timeout_s)
    simulator = make_simulator(opts.simulator, base_url=opts.simulator_base_url or opts.base_url, device=opts.device,
                               concurrency=opts.concurrency, cache_path=llm_cache_path(db))
    check_credentials(client, getattr(simulator, "client", None))
    return client, simulator


async def explain_feature(db: Database, store: DatabaseThreads, opts: ExplainOptions, client: LLMClient,
                          simulator: Simulator, feature: Feature, config: dict, run_id: int, stats: RunStats,
                          records: FeatureRecords, guard: SaveGuard | None = None,
                          windows: list[NeighbourWindow] | None = None,
                          steering: StoredSteering | None = None) -> FeatureOutcome | None:
    """Explain, simulate, score and store one feature's `records` (one transaction), counting it in `stats`;
    returns the outcome, None when another run stored the feature first. `windows`: in the contrastive mode, the
    neighbours' windows the explainer may show (None: no neighbours stored); `steering`: with steering evidence,
    the feature's stored steering."""
    # Dead features come back failed from the explainer (nothing above zero) without an LLM call.
    outcome = await explain_and_score(
        records, client, simulator, fmt=opts.fmt, n_candidates=opts.n_candidates, polarity=opts.polarity,
        temperature=opts.effective_temperature, max_tokens=opts.max_explanation_tokens, seed=opts.seed,
        simulate_test=ScorerName.SIMULATION in opts.scorer_names(),
        output_logits=(feature.extra or {}).get("logits", {}) if opts.with_logits() else None,
        calibrate=opts.calibrate, sample=opts.explainer_sample,
        contrast=Contrast(opts.explainer_negatives, windows) if opts.contrastive() else None,
        output_steering=steering,
    )
    written = await store.write(_save_outcome, db, feature, outcome, opts, config, run_id, guard)
    stats.record_outcome(feature.index, written, outcome.failure, outcome.failure_kind)
    return outcome if written else None


def make_explain_scorers(db: Database, opts: ExplainOptions, client: LLMClient, simulator: Simulator) -> RunScorers:
    return make_run_scorers(
        opts.scorer_names(), opts.judge_spec(), judge_base_url=opts.scorer_base_url or opts.base_url,
        concurrency=opts.concurrency, device=opts.device, cache_path=llm_cache_path(db),
        per_prompt=opts.scorer_examples, seed=opts.seed, explainer=client, simulator=simulator, db=db,
        subject_model=opts.model, steering_target_kl=opts.steering_target_kl)


async def finishing_passes(db: Database, store: DatabaseThreads, opts: ExplainOptions, simulator: Simulator,
                           run_scorers: RunScorers, all_feature_ids: list[int], config: dict, run_id: int,
                           stats: RunStats) -> None:
    """After every feature is done: shuffled baselines and the example scorers, over all selected features
    (not only this run's: a killed earlier run may have missed them). A distributed run calls it once."""
    simulates = ScorerName.SIMULATION in opts.scorer_names()
    if not (opts.shuffled_baseline and simulates) and run_scorers.scorers is None:
        return
    # A rerun with an added scorer fills its scores in without explaining again (scorers are not in the config).
    own = await store.read(_scored_explanations, db, all_feature_ids, config)
    await finish_batch(db, store, own, simulator=simulator if simulates else None, simulator_spec=opts.simulator,
                       run_scorers=run_scorers, shuffled_baseline=opts.shuffled_baseline, seed=opts.seed,
                       concurrency=opts.concurrency, calibrate=opts.calibrate, run_id=run_id, stats=stats)


async def _run(db: Database, opts: ExplainOptions, record: RunRecord, display: ProgressDisplay,
               sides: list[tuple[ExplainOptions, ExplainPlan]]) -> None:
    """Every side's pending features (positive first with --polarity both), on one set of clients; then every
    side's finishing passes."""
    client, simulator = make_clients(db, opts)
    run_scorers = make_explain_scorers(db, opts, client, simulator)
    check_credentials(run_scorers.owned_judge)
    stop = asyncio.Event()  # the budget is spent, or --fail-fast: no new feature starts
    fail_fast = FailFast(opts.fail_fast)
    simulator_client = getattr(simulator, "client", None)
    stats = record.stats

    async def refresh(store: DatabaseThreads, *, force: bool = False) -> None:
        # Explainer and LLM-simulator calls together: both spend the budget.
        stats.absorb_llm(merge_llm_stats([client.stats()] + ([simulator_client.stats()] if simulator_client else [])
                                         + ([run_scorers.owned_judge.stats()] if run_scorers.owned_judge else [])))
        display.show_stats(stats)
        if force or record.save_due():
            record.details["endpoints"] = endpoint_stats_of(client, simulator_client)
            await store.write(record.save)

    async def work(store: DatabaseThreads, side: ExplainOptions, plan: ExplainPlan,
                   records: ChunkedReads[int, FeatureInput], position: int) -> None:
        feature = plan.todo[position]
        if stop.is_set():
            return
        try:
            inputs = await records.get(position)
            if inputs is None:  # _load_many reads every feature it is given
                raise LookupError(f"feature {feature.index}: its records were not read")
            outcome = await explain_feature(db, store, side, client, simulator, feature, plan.config, record.run_id,
                                            stats, inputs[0], windows=inputs[1], steering=inputs[2])
            reason = fail_fast.observe(outcome.failure, outcome.failure_kind) if outcome is not None else None
            if reason is not None:
                stats.fail_run(reason)
                stop.set()
        finally:
            await refresh(store)
            if opts.budget_usd is not None and stats.cost_usd >= opts.budget_usd:
                if not stop.is_set():
                    stats.stopped_reason = f"budget of ${opts.budget_usd} reached"
                stop.set()

    try:
        with DatabaseThreads() as store:
            for side, plan in sides:
                records = ChunkedReads(store, partial(_load_many, db, side), [f.id for f in plan.todo], LOAD_CHUNK)
                await bounded(len(plan.todo), opts.concurrency, partial(work, store, side, plan, records))
            for side, plan in sides if not stop.is_set() else []:
                await finishing_passes(db, store, side, simulator, run_scorers, [f.id for f in plan.features],
                                       plan.config, record.run_id, stats)
            await refresh(store, force=True)
    finally:
        await run_scorers.aclose()
        await client.aclose()
        await simulator.aclose()


def check_logits_stored(opts: ExplainOptions, features: list[Feature]) -> None:
    """With --evidence activations+logits, every feature to explain needs its logit lens (stored by collection
    since evidence existed): refuse before any LLM call, saying how to get it."""
    if not opts.with_logits():
        return
    missing = [f.index for f in features if not (f.extra or {}).get("logits")]
    if missing:
        sae = " --sae PATH" if opts.sae else ""
        raise OptionsError(
            f"--evidence activations+logits: {len(missing)} of the {len(features)} features to explain (e.g. "
            f"{', '.join(map(str, missing[:5]))}) have no stored logit lens (collected before evidence was stored, "
            f"or imported without weights); recollect with `autointerp collect --model {opts.model} --layers "
            f"{opts.layer}{sae} --overwrite`, or explain with --evidence activations")


@dataclass
class ExplainPlan:
    """What an explain run has to do: its configuration, the selected features, and those not yet finished."""

    config: dict
    config_hash: str
    features: list[Feature]
    todo: list[Feature]


def check_bottom_records(session: Session, opts: ExplainOptions, features: list[Feature]) -> None:
    """The negative side is explained from, and scored on, the bottom records a signed collection keeps: refuse
    before any LLM call when none of the selected features has any, saying how to collect them."""
    if opts.polarity != Polarity.NEGATIVE or not features:
        return
    if not record_store.any_sampled_as(session, [f.id for f in features], SampleKind.BOTTOM):
        sae = " --sae PATH" if opts.sae else ""
        raise OptionsError(
            f"--polarity {opts.polarity}: none of the {len(features)} selected features of layer {opts.layer} has "
            "bottom records (its most negative windows): the layer was collected without --signed, so its negative "
            f"side can be neither explained nor scored; recollect with `autointerp collect --model {opts.model} "
            f"--layers {opts.layer}{sae} --signed --overwrite`, or explain with --polarity positive")


def plan_explain(db: Database, opts: ExplainOptions) -> ExplainPlan:
    """The features to explain under one polarity (finished ones skipped; failed ones too unless they failed on
    the endpoint or `retry_failed`), checked for the evidence the prompt needs; shared by the local and the
    distributed run."""
    config = opts.explain_config()
    chash = repo.config_hash(config)
    with db.session() as session:
        features = select_features(session, opts.model, opts.layer, opts.sae, opts.features)
        check_bottom_records(session, opts, features)
        finished = already_done.finished_features(session, [f.id for f in features], config_hash=chash)
        todo = [f for f in features if f.id not in finished or finished[f.id].redo(opts.retry_failed)]
        check_steering_stored(session, opts, todo)
    check_logits_stored(opts, todo)
    return ExplainPlan(config, chash, features, todo)


def plan_sides(db: Database, opts: ExplainOptions) -> list[tuple[ExplainOptions, ExplainPlan]]:
    """Each polarity's options and plan (two with --polarity both), every one checked before any work."""
    return [(side, plan_explain(db, side)) for side in opts.sides()]


def run_explain(db: Database, opts: ExplainOptions, *, run_id: int | None = None, show_progress: bool = True) -> int:
    """Run (or resume) an explain batch; returns the run id. Finished features are skipped without LLM
    calls; with `retry_failed`, features recorded as failed are done again. With `run_id`, the run row
    already exists (the API made it) and this run fills it in."""
    sides = plan_sides(db, opts)
    hashes = {side.polarity: plan.config_hash for side, plan in sides}
    # One polarity: its hash, as runs stored it before --polarity both; both: each side's.
    run_config = {**opts.as_dict(), **({"config_hash": next(iter(hashes.values()))} if len(hashes) == 1
                                       else {"config_hashes": hashes})}
    total = sum(len(plan.features) for _, plan in sides)
    with sigterm_interrupts(), \
            RunRecord(db, RunKind.EXPLAIN, run_config, run_id=run_id, total=total) as record, \
            ProgressDisplay(total, show=show_progress) as display:
        record.stats.skipped = total - sum(len(plan.todo) for _, plan in sides)
        with batch_collector():
            asyncio.run(_run(db, opts, record, display, sides))
    return record.run_id
