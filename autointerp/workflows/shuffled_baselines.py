"""The shuffled baseline stored with every scoring run: each feature's test records simulated with another
feature's explanation (chosen reproducibly from the same layer), scored the same way with role "shuffled"."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from activations.records import ActivationRecord
from activations.vocab import DataSplit, Polarity, ScoreMethod, ScoreRole, ScoringSubset
from autointerp.runtime.db_threads import DatabaseThreads
from autointerp.workflows.finishing_reads import FinishTarget
from scorer import ScoreValue, ShuffledPicker, simulation_config, simulation_scorer_config
from scorer.evaluate import SimulationOutcome, evaluate_on
from scorer.scored_set import reported_input, scoring_input
from simulator.base import Simulator
from storage.core import repository as repo
from storage.core.db import Database
from storage.results import outcome_store

NO_OTHER = "no other feature of this layer has an explanation (of the same polarity) to shuffle in"


@dataclass
class LayerPool:
    """The layer's current explanations, read once: texts to shuffle in, and the ids their simulations point at."""

    picker: ShuffledPicker[int]  # over feature id -> text
    ids: dict[int, int]  # feature id -> explanation id


def read_layer_pool(db: Database, feature_id: int, seed: int, polarity: str = Polarity.POSITIVE) -> LayerPool:
    """The current explanations of `polarity` of `feature_id`'s layer, for the shuffled baselines and the example
    scorers."""
    with db.session() as session:
        current = repo.layer_current_explanation_texts(session, repo.get_feature(session, feature_id), polarity)
    return LayerPool(ShuffledPicker({f: text for f, (_, text) in current.items()}, seed),
                     {f: explanation_id for f, (explanation_id, _) in current.items()})


class LayerPools:
    """Each layer's pool, read the first time a feature of it asks (by either pass), then shared."""

    def __init__(self, db: Database, store: DatabaseThreads) -> None:
        self._db, self._store = db, store
        self._pools: dict[tuple[int, int, str], asyncio.Future[LayerPool]] = {}

    async def of(self, feature: repo.FeatureKeyed, seed: int, polarity: str = Polarity.POSITIVE) -> LayerPool:
        key = (feature.layer, seed, polarity)
        if key not in self._pools:
            self._pools[key] = asyncio.ensure_future(self._store.read(read_layer_pool, self._db, feature.id, seed,
                                                                      polarity))
        return await self._pools[key]


def _evaluation(own_id: int, other_explanation_id: int | None, records: Sequence[ActivationRecord],
                outcome: SimulationOutcome | None, scores: Sequence[ScoreValue],
                simulator_spec: str, polarity: str) -> outcome_store.Evaluation:
    """A baseline as an evaluation of the own explanation: the other explanation's simulation and its scores, or,
    with no other explanation to shuffle in, undefined scores that say so."""
    if other_explanation_id is None or outcome is None:
        no_other = [ScoreValue(ScoreMethod.EV_CORRELATION, None, NO_OTHER, subset=subset, role=ScoreRole.SHUFFLED)
                    for subset in ScoringSubset]
        return outcome_store.Evaluation(simulator_spec, simulation_scorer_config(), no_other)
    simulation = outcome_store.SimulationToStore(
        simulation_config(simulator_spec, polarity, own=own_id), records, outcome.simulations, outcome.failure,
        role=ScoreRole.SHUFFLED, explanation=repo.RowRef(other_explanation_id))
    return outcome_store.Evaluation(simulator_spec, simulation_scorer_config(), scores, simulation)


def _save(db: Database, target: FinishTarget, other_explanation_id: int | None, records: Sequence[ActivationRecord],
          outcome: SimulationOutcome | None, scores: Sequence[ScoreValue], simulator_spec: str, run_id: int) -> None:
    """One baseline in one transaction, from ids already known (nothing is read back but what dedups)."""
    evaluation = _evaluation(target.explanation_id, other_explanation_id, records, outcome, scores, simulator_spec,
                             target.polarity)
    with db.session() as session, session.begin():
        outcome_store.save_evaluation(session, repo.RowRef(target.explanation_id), target.feature, evaluation,
                                      run_id=run_id)


async def add_shuffled_baseline(db: Database, store: DatabaseThreads, simulator: Simulator, simulator_spec: str,
                                target: FinishTarget, layer: LayerPool, *, run_id: int, seed: int = 0,
                                calibrate: bool = False) -> None:
    """For an own, already scored explanation without a baseline under this simulator, simulate another
    feature's current explanation (from `layer`) on the same test records and store its scores on the own
    explanation with role "shuffled" (the simulation row points at the explanation actually simulated). With
    `calibrate`, the borrowed explanation's calibrated scores too (its own line fitted on the valid split), so
    calibrated methods have a baseline."""
    choice = layer.picker.pick(target.feature.id)
    data = reported_input(target.records, target.polarity)
    valid = scoring_input(target.records, DataSplit.VALID, target.polarity) if calibrate else None
    outcome = await evaluate_on(simulator, choice[1], data, valid=valid, role=ScoreRole.SHUFFLED,
                                seed=seed) if choice else None
    scores: list[ScoreValue] = outcome.scores if outcome else []
    await store.write(_save, db, target, layer.ids[choice[0]] if choice else None, data.records, outcome, scores,
                      simulator_spec, run_id)
