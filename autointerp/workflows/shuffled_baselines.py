"""The shuffled baseline stored with every scoring run: each feature's test records simulated with another
feature's explanation (chosen reproducibly from the same layer), scored the same way with role "shuffled"."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from activations.records import ActivationRecord, FeatureRecords
from activations.vocab import DataSplit, ScoreMethod, ScoreRole, ScoringSubset
from autointerp.runtime.bounded import bounded
from autointerp.runtime.db_threads import ChunkedReads, DatabaseThreads
from scorer import ScoreValue, ShuffledPicker, simulation_config, simulation_scorer_config
from scorer.evaluate import SimulationOutcome, evaluate_on
from scorer.scored_set import reported_input, scoring_input
from simulator.base import Simulator
from storage.core import repository as repo
from storage.core.db import Database
from storage.records import record_store
from storage.results import already_done, outcome_store

NO_OTHER = "no other feature of this layer has an explanation to shuffle in"
CHUNK = 32  # explanations whose pending work is read together (three queries, not several per explanation)


@dataclass
class _Pending:
    """An own explanation that still needs its baseline under this simulator."""

    explanation_id: int
    feature: repo.FeatureRef  # what the baseline's rows copy from the feature, so saving it needs no lookup
    polarity: str
    records: FeatureRecords


@dataclass
class LayerPool:
    """The layer's current explanations, read once: texts to shuffle in, and the ids their simulations point at."""

    picker: ShuffledPicker[int]  # over feature id -> text
    ids: dict[int, int]  # feature id -> explanation id


def _pending(db: Database, explanation_ids: Sequence[int], simulator_spec: str) -> dict[int, _Pending]:
    """Those of these explanations without a baseline under this simulator, each with its feature's records."""
    with db.session() as session:
        done = already_done.with_shuffled_baseline(session, explanation_ids, simulator=simulator_spec,
                                                   scorer_config=simulation_scorer_config())
        todo = repo.explanations_with_features(session, [e for e in explanation_ids if e not in done])
        records = record_store.load_many_feature_records(session, list({f.id: f for _, f in todo.values()}.values()))
        return {e.id: _Pending(e.id, repo.FeatureRef(f.id, f.model_id, f.layer), e.polarity, records[f.id])
                for e, f in todo.values()}


def read_layer_pool(db: Database, feature_id: int, seed: int) -> LayerPool:
    """The current explanations of `feature_id`'s layer, for the shuffled baselines and the example scorers."""
    with db.session() as session:
        current = repo.layer_current_explanation_texts(session, repo.get_feature(session, feature_id))
    return LayerPool(ShuffledPicker({f: text for f, (_, text) in current.items()}, seed),
                 {f: explanation_id for f, (explanation_id, _) in current.items()})


def _evaluation(own_id: int, other_explanation_id: int | None, records: Sequence[ActivationRecord],
                outcome: SimulationOutcome | None, scores: Sequence[ScoreValue],
                simulator_spec: str) -> outcome_store.Evaluation:
    """A baseline as an evaluation of the own explanation: the other explanation's simulation and its scores, or,
    with no other explanation to shuffle in, undefined scores that say so."""
    if other_explanation_id is None or outcome is None:
        no_other = [ScoreValue(ScoreMethod.EV_CORRELATION, None, NO_OTHER, subset=subset, role=ScoreRole.SHUFFLED)
                    for subset in ScoringSubset]
        return outcome_store.Evaluation(simulator_spec, simulation_scorer_config(), no_other)
    simulation = outcome_store.SimulationToStore(
        simulation_config(simulator_spec, own=own_id), records, outcome.simulations, outcome.failure,
        role=ScoreRole.SHUFFLED, explanation=repo.RowRef(other_explanation_id))
    return outcome_store.Evaluation(simulator_spec, simulation_scorer_config(), scores, simulation)


def _save(db: Database, item: _Pending, other_explanation_id: int | None, records: Sequence[ActivationRecord],
          outcome: SimulationOutcome | None, scores: Sequence[ScoreValue], simulator_spec: str, run_id: int) -> None:
    """One baseline in one transaction, from ids already known (nothing is read back but what dedups)."""
    evaluation = _evaluation(item.explanation_id, other_explanation_id, records, outcome, scores, simulator_spec)
    with db.session() as session, session.begin():
        outcome_store.save_evaluation(session, repo.RowRef(item.explanation_id), item.feature, evaluation,
                                      run_id=run_id)


async def add_shuffled_baselines(db: Database, store: DatabaseThreads, simulator: Simulator, simulator_spec: str,
                                 explanation_ids: Sequence[int], *, run_id: int, seed: int = 0,
                                 concurrency: int = 4, calibrate: bool = False) -> int:
    """For each given (own, already scored) explanation without a baseline under this simulator, simulate
    another feature's current explanation on the same test records and store its scores on the own
    explanation with role "shuffled" (the simulation row points at the explanation actually simulated).
    Up to `concurrency` at once; with `calibrate`, the borrowed explanation's calibrated scores too (its own
    line fitted on the valid split), so calibrated methods have a baseline. Returns how many were stored."""
    pending = ChunkedReads(store, partial(_pending, db, simulator_spec=simulator_spec), explanation_ids, CHUNK)
    pool: asyncio.Future[LayerPool] | None = None  # the layer's current explanations, read once

    async def one(position: int) -> bool:
        item = await pending.get(position)
        if item is None:
            return False
        nonlocal pool
        if pool is None:
            pool = asyncio.ensure_future(store.read(read_layer_pool, db, item.feature.id, seed))
        layer = await pool
        choice = layer.picker.pick(item.feature.id)
        data = reported_input(item.records, item.polarity)
        valid = scoring_input(item.records, DataSplit.VALID, item.polarity) if calibrate else None
        outcome = await evaluate_on(simulator, choice[1], data, valid=valid, role=ScoreRole.SHUFFLED,
                                    seed=seed) if choice else None
        scores: list[ScoreValue] = outcome.scores if outcome else []
        await store.write(_save, db, item, layer.ids[choice[0]] if choice else None, data.records, outcome,
                          scores, simulator_spec, run_id)
        return True

    return sum(await bounded(len(explanation_ids), concurrency, one))
