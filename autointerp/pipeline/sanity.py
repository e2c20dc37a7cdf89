"""The sanity baseline stored with every scoring run: each feature's test records simulated with another
feature's explanation (chosen reproducibly from the same layer), scored the same way with role "shuffled"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from activations.vocab import DataSplit, ScoreMethod, ScoreRole, ScoringSubset
from autointerp.pipeline.feature_work import score, scoring_input, simulate
from scorer import ScoreValue, pick_shuffled
from simulator.base import Simulator
from storage import outcome_store
from storage import repository as repo
from storage.db import Database


async def add_sanity_baselines(
    db: Database, simulator: Simulator, simulator_spec: str, explanation_ids: Sequence[int], *, run_id: int,
    seed: int = 0,
) -> int:
    """For each given (own, already scored) explanation without a baseline under this simulator, simulate
    another feature's current explanation on the same test records and store its scores on the own
    explanation with role "shuffled" (the simulation row points at the explanation actually simulated).
    Returns how many baselines were stored."""
    stored = 0
    pool: dict[int, str] | None = None
    for explanation_id in explanation_ids:
        with db.session() as session:
            if outcome_store.has_shuffled_baseline(session, explanation_id, simulator_spec):
                continue
            own = repo.get_explanation(session, explanation_id)
            feature = repo.get_feature(session, own.feature_id)
            records = repo.load_feature_records(session, feature)
            pool = pool if pool is not None else repo.layer_current_explanations(session, feature)
        choice = pick_shuffled(feature.id, pool, seed=seed)
        data = scoring_input(records, DataSplit.TEST, own.polarity)
        outcome = await simulate(simulator, choice[1], data) if choice else None
        with db.session() as session, session.begin():
            own = repo.get_explanation(session, explanation_id)
            feature = repo.get_feature(session, own.feature_id)
            if choice is None or outcome is None:
                reason = "no other feature of this layer has an explanation to shuffle in"
                scores = [ScoreValue(ScoreMethod.EV_CORRELATION, None, reason, subset=subset, role=ScoreRole.SHUFFLED)
                          for subset in ScoringSubset]
                outcome_store.store_scores(session, own, feature, None, scores, simulator=simulator_spec,
                                           run_id=run_id)
                stored += 1
                continue
            other_id = cast(int, choice[0])  # a key of `pool`: a feature id
            other = repo.current_explanations(session, [other_id])[other_id]
            simulation = outcome_store.store_simulation(
                session, other, feature, simulator=simulator_spec,
                config={"simulator": simulator_spec, "split": "test", "own": own.id},
                records=data.records, simulations=outcome.simulations, failure=outcome.failure,
                role=ScoreRole.SHUFFLED, run_id=run_id,
            )
            if outcome.simulations is not None:
                outcome_store.store_scores(session, own, feature, simulation,
                                           score(data, outcome.simulations, role=ScoreRole.SHUFFLED, seed=seed),
                                           simulator=simulator_spec, run_id=run_id)
            stored += 1
    return stored
