"""The sanity baseline stored with every scoring run: each feature's test records simulated with another
feature's explanation (chosen reproducibly from the same layer), scored the same way with role "shuffled"."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from activations.records import FeatureRecords
from activations.vocab import DataSplit, ScoreMethod, ScoreRole, ScoringSubset
from autointerp.pipeline.calibrated import calibrated_scores
from autointerp.pipeline.db_threads import DatabaseThreads
from autointerp.pipeline.feature_work import ScoringInput, SimulationOutcome, score, scoring_input, simulate
from scorer import ScoreValue, pick_shuffled
from simulator.base import Simulator
from storage import outcome_store
from storage import repository as repo
from storage.db import Database

NO_OTHER = "no other feature of this layer has an explanation to shuffle in"


@dataclass
class _Pending:
    """An own explanation that still needs its baseline under this simulator."""

    explanation_id: int
    feature_id: int
    polarity: str
    records: FeatureRecords


def _pending(db: Database, explanation_id: int, simulator_spec: str) -> _Pending | None:
    with db.session() as session:
        if outcome_store.has_shuffled_baseline(session, explanation_id, simulator_spec):
            return None
        own = repo.get_explanation(session, explanation_id)
        feature = repo.get_feature(session, own.feature_id)
        return _Pending(own.id, feature.id, own.polarity, repo.load_feature_records(session, feature))


def _layer_pool(db: Database, feature_id: int) -> dict[int, str]:
    with db.session() as session:
        return repo.layer_current_explanations(session, repo.get_feature(session, feature_id))


def _save(db: Database, item: _Pending, other_feature_id: int | None, data: ScoringInput,
          outcome: SimulationOutcome | None, simulator_spec: str, run_id: int, seed: int,
          calibrated: Sequence[ScoreValue] = ()) -> None:
    with db.session() as session, session.begin():
        own = repo.get_explanation(session, item.explanation_id)
        feature = repo.get_feature(session, item.feature_id)
        if other_feature_id is None or outcome is None:
            scores = [ScoreValue(ScoreMethod.EV_CORRELATION, None, NO_OTHER, subset=subset, role=ScoreRole.SHUFFLED)
                      for subset in ScoringSubset]
            outcome_store.store_scores(session, own, feature, None, scores, simulator=simulator_spec, run_id=run_id)
            return
        other = repo.current_explanations(session, [other_feature_id])[other_feature_id]
        simulation = outcome_store.store_simulation(
            session, other, feature, simulator=simulator_spec,
            config={"simulator": simulator_spec, "split": "test", "own": own.id},
            records=data.records, simulations=outcome.simulations, failure=outcome.failure,
            role=ScoreRole.SHUFFLED, run_id=run_id,
        )
        if outcome.simulations is not None:
            outcome_store.store_scores(session, own, feature, simulation,
                                       score(data, outcome.simulations, role=ScoreRole.SHUFFLED, seed=seed)
                                       + list(calibrated), simulator=simulator_spec, run_id=run_id)


async def add_sanity_baselines(db: Database, store: DatabaseThreads, simulator: Simulator, simulator_spec: str,
                               explanation_ids: Sequence[int], *, run_id: int, seed: int = 0,
                               concurrency: int = 4, calibrate: bool = False) -> int:
    """For each given (own, already scored) explanation without a baseline under this simulator, simulate
    another feature's current explanation on the same test records and store its scores on the own
    explanation with role "shuffled" (the simulation row points at the explanation actually simulated).
    Up to `concurrency` at once; with `calibrate`, the borrowed explanation's calibrated scores too (its own
    line fitted on the valid split), so calibrated methods have a baseline. Returns how many were stored."""
    gate = asyncio.Semaphore(concurrency)
    pool: asyncio.Future[dict[int, str]] | None = None  # the layer's current explanations, read once


    async def one(explanation_id: int) -> bool:
        async with gate:
            item = await store.read(_pending, db, explanation_id, simulator_spec)
            if item is None:
                return False
            nonlocal pool
            if pool is None:
                pool = asyncio.ensure_future(store.read(_layer_pool, db, item.feature_id))
            choice = pick_shuffled(item.feature_id, await pool, seed=seed)
            data = scoring_input(item.records, DataSplit.TEST, item.polarity)
            outcome = await simulate(simulator, choice[1], data) if choice else None
            calibrated = await calibrated_scores(
                simulator, choice[1], scoring_input(item.records, DataSplit.VALID, item.polarity), data,
                outcome.simulations, role=ScoreRole.SHUFFLED, seed=seed,
            ) if calibrate and choice and outcome and outcome.simulations is not None else []
            await store.write(_save, db, item, choice[0] if choice else None, data, outcome, simulator_spec,
                              run_id, seed, calibrated)
            return True

    return sum(await asyncio.gather(*(one(e) for e in explanation_ids)))
