"""Whole-feature documents for export: a feature with its statistics, records, explanations and every
score, streamed in batches so a large layer never sits in memory at once."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.feature_scope import scope_conds
from storage.queries import records_by_feature
from storage.rows import explanation_dict, feature_key_dict, feature_stats_dict, score_dict
from storage.schema import Explanation, Feature, Score, SubjectModel


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
    order = {fid: i for i, fid in enumerate(ids)}
    for feature, model_name in sorted(features, key=lambda fm: order[fm[0].id]):
        yield {
            **feature_key_dict(feature, model_name), **feature_stats_dict(feature),
            "records": records.get(feature.id, []), "explanations": explanations.get(feature.id, []),
        }
