"""Whole-feature documents for export: a feature with its statistics, records, explanations and every
score, streamed in batches so a large layer never sits in memory at once.

Beside the nested lists, flat fields for analysis without unnesting: the current explanation (`explanation`,
`explanation_id`, `explainer`), its best score per method on the method's default subset (`score_<method>`:
measured scores only, as ranking reads them; imported ones stay in the nested scores, marked `imported`), and
the weight evidence stored at collection (`logits`, `neighbours`; None when not stored)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from storage.core.repository import current_explanations
from storage.core.rows import explanation_dict, feature_key_dict, feature_stats_dict, score_dict
from storage.core.schema import Explanation, Feature, Score, SubjectModel
from storage.reads.feature_scope import scope_conds
from storage.reads.queries import SCORE_METHODS, FeatureQuery, default_subset, ranking_score_conds, records_by_feature


def iter_feature_documents(session: Session, *, model: str | None = None, layer: int | None = None,
                           kind: str | None = None, sae: str | None = None, batch_size: int = 200) -> Iterator[dict]:
    conds = scope_conds(model=model, layer=layer, kind=kind, sae=sae)
    ids_stmt = (select(Feature.id).join(SubjectModel, SubjectModel.id == Feature.model_id).where(*conds)
                .order_by(SubjectModel.name, Feature.layer, Feature.kind, Feature.sae_key, Feature.index))
    ids = list(session.scalars(ids_stmt))
    for start in range(0, len(ids), batch_size):
        yield from _documents(session, ids[start:start + batch_size])


def _documents(session: Session, ids: list[int]) -> Iterator[dict]:
    features = session.execute(
        select(Feature, SubjectModel.name)
        .join(SubjectModel, SubjectModel.id == Feature.model_id)
        .where(Feature.id.in_(ids))
    ).all()
    records = records_by_feature(session, ids)
    explanations: dict[int, list] = {}
    by_id: dict[int, dict] = {}
    for e in session.scalars(select(Explanation).where(Explanation.feature_id.in_(ids)).order_by(Explanation.id)):
        doc = {**explanation_dict(e), "scores": []}
        explanations.setdefault(e.feature_id, []).append(doc)
        by_id[e.id] = doc
    for s in session.scalars(select(Score).where(Score.feature_id.in_(ids)).order_by(Score.id)):
        if s.explanation_id in by_id:
            by_id[s.explanation_id]["scores"].append(score_dict(s))
    current = current_explanations(session, ids)
    best = best_scores_by_method(session, [e.id for e in current.values()])
    order = {fid: i for i, fid in enumerate(ids)}
    for feature, model_name in sorted(features, key=lambda fm: order[fm[0].id]):
        explanation = current.get(feature.id)
        scores = best.get(explanation.id, {}) if explanation is not None else {}
        extra = feature.extra or {}
        yield {
            **feature_key_dict(feature, model_name), **feature_stats_dict(feature),
            "explanation": explanation.text if explanation is not None else None,
            "explanation_id": explanation.id if explanation is not None else None,
            "explainer": explanation.explainer if explanation is not None else None,
            **{score_column(method): scores.get(method) for method in SCORE_METHODS},
            "logits": extra.get("logits"), "neighbours": extra.get("neighbours"),
            "records": records.get(feature.id, []), "explanations": explanations.get(feature.id, []),
        }


def score_column(method: str) -> str:
    return f"score_{method}"


def best_scores_by_method(session: Session, explanation_ids: list[int]) -> dict[int, dict[str, float]]:
    """explanation id -> method -> its best ranking score on the method's default subset, in one query."""
    if not explanation_ids:
        return {}
    per_method = or_(*(and_(*ranking_score_conds(FeatureQuery(method=m, subset=default_subset(m))))
                       for m in SCORE_METHODS))
    rows = session.execute(
        select(Score.explanation_id, Score.method, func.max(Score.value))
        .where(Score.explanation_id.in_(explanation_ids), per_method)
        .group_by(Score.explanation_id, Score.method))
    out: dict[int, dict[str, float]] = {}
    for explanation_id, method, value in rows:
        if value is not None:  # always: the conditions skip undefined scores
            out.setdefault(explanation_id, {})[method] = value
    return out
