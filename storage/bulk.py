"""Bulk ingest of scored explanations with Core executemany: the fast path for large imports and
synthetic fills, bypassing per-row ORM work (one INSERT per table per batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from activations.vocab import OutcomeStatus, Polarity, ScoreRole
from storage.repository import config_hash
from storage.schema import Explanation, Feature, Score, utcnow


@dataclass
class ScoredExplanationRow:
    feature_id: int
    model_id: int
    layer: int
    text: str
    explainer: str
    candidate: int
    scores: dict[tuple[str, str], float | None]  # (method, subset) -> value
    simulator: str | None = None


def bulk_add_scored_explanations(session: Session, rows: list[ScoredExplanationRow], *, config: dict) -> int:
    """Insert explanations and their scores; returns the number of rows written (both tables)."""
    if not rows:
        return 0
    chash = config_hash(config)
    now = utcnow()
    explanation_values = [
        {"feature_id": r.feature_id, "text": r.text, "explainer": r.explainer, "config_hash": chash,
         "candidate": r.candidate, "status": OutcomeStatus.OK, "polarity": Polarity.POSITIVE, "selected": True,
         "params": {}, "created_at": now}
        for r in rows
    ]
    ids = session.scalars(
        insert(Explanation).returning(Explanation.id, sort_by_parameter_order=True), explanation_values
    ).all()
    score_values: list[dict[str, Any]] = [
        {"explanation_id": eid, "feature_id": r.feature_id, "model_id": r.model_id, "layer": r.layer,
         "method": method, "subset": subset, "value": value, "role": ScoreRole.OWN, "simulator": r.simulator,
         "scorer_hash": "", "details": {}, "created_at": now,
         "undefined_reason": None if value is not None else "constant input"}
        for eid, r in zip(ids, rows)
        for (method, subset), value in r.scores.items()
    ]
    session.execute(insert(Score), score_values)
    return len(explanation_values) + len(score_values)


def bulk_add_features(
    session: Session, model_id: int, layer: int, indices: range, *, kind: str = "mlp_neuron"
) -> list[int]:
    """Insert bare features of one layer; returns their ids in index order."""
    session.execute(
        insert(Feature),
        [{"model_id": model_id, "layer": layer, "kind": kind, "sae_key": "", "index": i, "dead": False, "extra": {}}
         for i in indices],
    )
    return list(session.scalars(
        select(Feature.id).where(Feature.model_id == model_id, Feature.layer == layer, Feature.kind == kind)
        .order_by(Feature.index)
    ))
