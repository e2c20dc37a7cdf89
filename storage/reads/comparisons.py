"""Per-feature best scores, for side-by-side comparisons of explainers and of score methods."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activations.vocab import ScoreMethod, ScoringSubset
from storage.core.schema import Explanation, Feature, Score, SubjectModel
from storage.reads.queries import FeatureQuery, ranking_score_conds


def best_scores_by_feature(session: Session, *, explainer: str, layer: int, model: str | None = None,
                           method: str = ScoreMethod.EV_CORRELATION, subset: str = ScoringSubset.TOP_AND_RANDOM,
                           simulator: str | None = None,
                           include_imported: bool = False) -> dict[int, tuple[float, str | None]]:
    """feature index -> (best score, explanation text behind it) for the explainer's explanations (measured scores
    only unless `include_imported`)."""
    ranking = ranking_score_conds(FeatureQuery(method=method, subset=subset, include_imported=include_imported))
    stmt = (
        select(Feature.index, Score.value, Explanation.text)
        .join(Explanation, Explanation.id == Score.explanation_id)
        .join(Feature, Feature.id == Score.feature_id)
        .where(Explanation.explainer == explainer, Score.layer == layer, *ranking)
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


def best_score_per_feature(session: Session, *, layer: int, method: str, subset: str, model: str | None = None,
                           explainer: str | None = None, include_imported: bool = False) -> dict[int, float]:
    """feature index -> its best ranking score under the method and subset (any explainer unless named; measured
    scores only unless `include_imported`)."""
    ranking = ranking_score_conds(FeatureQuery(method=method, subset=subset, include_imported=include_imported))
    stmt = (
        select(Feature.index, func.max(Score.value))
        .join(Feature, Feature.id == Score.feature_id)
        .where(Score.layer == layer, *ranking)
        .group_by(Feature.index)
    )
    if model is not None:
        stmt = stmt.join(SubjectModel, SubjectModel.id == Feature.model_id).where(SubjectModel.name == model)
    if explainer is not None:
        stmt = stmt.join(Explanation, Explanation.id == Score.explanation_id).where(Explanation.explainer == explainer)
    return {index: float(value) for index, value in session.execute(stmt) if value is not None}
