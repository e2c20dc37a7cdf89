"""The sanity baseline stored with every scoring run: each feature's test records simulated with another
feature's explanation (chosen reproducibly from the same layer), scored the same way with role "shuffled"."""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import select

from autointerp.pipeline.feature_work import score, scoring_input, simulate
from scorer import ScoreValue, pick_shuffled
from simulator.base import Simulator
from storage import outcome_store
from storage import repository as repo
from storage.db import Database
from storage.schema import Explanation, Feature, Score


def _layer_explanations(db: Database, feature: Feature) -> dict[int, str]:
    """feature id -> text of its latest selected explanation, for every feature of the same layer."""
    with db.session() as session:
        rows = session.execute(
            select(Explanation.feature_id, Explanation.text)
            .join(Feature, Feature.id == Explanation.feature_id)
            .where(Feature.model_id == feature.model_id, Feature.layer == feature.layer,
                   Feature.sae_key == feature.sae_key, Explanation.status == "ok", Explanation.selected.is_(True))
            .order_by(Explanation.id)
        )
        return {fid: text for fid, text in rows}


async def add_sanity_baselines(db: Database, simulator: Simulator, simulator_spec: str, explanation_ids: Sequence[int],
                               *, run_id: int, seed: int = 0) -> int:
    """For each given (own, already scored) explanation without a baseline under this simulator, simulate
    another feature's explanation on the same test records and store its scores on the own explanation
    with role "shuffled" (the simulation row points at the explanation actually simulated). Returns how
    many baselines were stored."""
    stored = 0
    pool: dict[int, str] | None = None
    for explanation_id in explanation_ids:
        with db.session() as session:
            own = session.get(Explanation, explanation_id)
            feature = session.get(Feature, own.feature_id)
            done = session.scalar(select(Score.id).where(
                Score.explanation_id == own.id, Score.role == "shuffled", Score.simulator == simulator_spec).limit(1))
            pairs = repo.load_records(session, feature) if done is None else []
        if done is not None:
            continue
        pool = pool if pool is not None else _layer_explanations(db, feature)
        choice = pick_shuffled(feature.id, pool, seed=seed)
        data = scoring_input(pairs, "test", feature.max_activation or 0.0, own.polarity)
        outcome = await simulate(simulator, choice[1], data) if choice else None
        with db.session() as session, session.begin():
            own = session.get(Explanation, explanation_id)
            feature = session.get(Feature, own.feature_id)
            if choice is None:
                reason = "no other feature of this layer has an explanation to shuffle in"
                scores = [ScoreValue("ev_correlation", None, reason, subset=subset, role="shuffled")
                          for subset in ("top_and_random", "random_only")]
                outcome_store.store_scores(session, own, feature, None, scores, simulator=simulator_spec, run_id=run_id)
                stored += 1
                continue
            other = session.scalar(select(Explanation).where(
                Explanation.feature_id == choice[0], Explanation.status == "ok", Explanation.selected.is_(True)
            ).order_by(Explanation.id.desc()).limit(1))
            simulation = outcome_store.store_simulation(
                session, other, feature, simulator=simulator_spec,
                config={"simulator": simulator_spec, "split": "test", "own": own.id},
                record_ids=data.record_ids, splits=data.splits, simulations=outcome.simulations,
                failure=outcome.failure, role="shuffled", run_id=run_id,
            )
            if outcome.simulations is not None:
                outcome_store.store_scores(session, own, feature, simulation,
                                           score(data, outcome.simulations, role="shuffled", seed=seed),
                                           simulator=simulator_spec, run_id=run_id)
            stored += 1
    return stored
