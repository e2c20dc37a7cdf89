"""Per-feature best scores of one explainer, for side-by-side comparisons of explainers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.vocab import ScoreMethod, ScoreRole, ScoringSubset
from storage.schema import Explanation, Feature, Score, SubjectModel


def best_scores_by_feature(session: Session, *, explainer: str, layer: int, model: str | None = None,
                           method: str = ScoreMethod.EV_CORRELATION, subset: str = ScoringSubset.TOP_AND_RANDOM,
                           simulator: str | None = None) -> dict[int, tuple[float, str | None]]:
    """feature index -> (best score, explanation text behind it) for the explainer's explanations."""
    stmt = (
        select(Feature.index, Score.value, Explanation.text)
        .join(Explanation, Explanation.id == Score.explanation_id)
        .join(Feature, Feature.id == Score.feature_id)
        .where(Explanation.explainer == explainer, Score.layer == layer, Score.method == method,
               Score.subset == subset, Score.role == ScoreRole.OWN, Score.value.is_not(None))
        .order_by(Feature.index, Score.value.desc())
    )
    if model is not None:
        stmt = stmt.join(SubjectModel, SubjectModel.id == Feature.model_id).where(SubjectModel.name == model)
    if simulator is not None:
        stmt = stmt.where(Score.simulator == simulator)
    out: dict[int, tuple[float, str | None]] = {}
    for index, value, text in session.execute(stmt):
        if value is not None:  # always: the query skips undefined scores
            out.setdefault(index, (value, text))
    return out

