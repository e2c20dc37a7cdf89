"""Whole-feature documents for export: a feature with its statistics, records, explanations and every
score, streamed in batches so a large layer never sits in memory at once."""

from __future__ import annotations

from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.queries import records_by_feature
from storage.schema import Explanation, Feature, Score, SubjectModel

EXPLANATION_FIELDS = ("id", "status", "text", "failure_reason", "explainer", "prompt_version", "params", "polarity",
                      "candidate", "selected", "prompt_tokens", "completion_tokens", "cost_usd", "elapsed_s", "run_id",
                      "source")
SCORE_FIELDS = ("method", "subset", "role", "simulator", "value", "undefined_reason", "ci_low", "ci_high",
                "n_records", "simulation_id", "run_id")


def _row_dict(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    out = {f: getattr(row, f) for f in fields}
    if "created_at" in row.__table__.columns:
        out["created_at"] = row.created_at.isoformat() if row.created_at else None
    return out


def iter_feature_documents(session: Session, *, model: str | None = None, layer: int | None = None,
                           kind: str | None = None, sae: str | None = None, batch_size: int = 200) -> Iterator[dict]:
    conds = []
    if model is not None:
        conds.append(SubjectModel.name == model)
    if layer is not None:
        conds.append(Feature.layer == layer)
    if kind is not None:
        conds.append(Feature.kind == kind)
    if sae is not None:
        conds.append(Feature.sae_key == sae)
    ids_stmt = (select(Feature.id).join(SubjectModel, SubjectModel.id == Feature.model_id).where(*conds)
                .order_by(SubjectModel.name, Feature.layer, Feature.kind, Feature.sae_key, Feature.index))
    ids = list(session.scalars(ids_stmt))
    for start in range(0, len(ids), batch_size):
        yield from _documents(session, ids[start:start + batch_size])


def _documents(session: Session, ids: list[int]) -> Iterator[dict]:
    features = session.execute(
        select(Feature, SubjectModel.name).join(SubjectModel, SubjectModel.id == Feature.model_id).where(Feature.id.in_(ids))
    ).all()
    records = records_by_feature(session, ids)
    explanations: dict[int, list] = {}
    by_id: dict[int, dict] = {}
    for e in session.scalars(select(Explanation).where(Explanation.feature_id.in_(ids)).order_by(Explanation.id)):
        doc = {**_row_dict(e, EXPLANATION_FIELDS), "scores": []}
        explanations.setdefault(e.feature_id, []).append(doc)
        by_id[e.id] = doc
    for s in session.scalars(select(Score).where(Score.feature_id.in_(ids)).order_by(Score.id)):
        if s.explanation_id in by_id:
            by_id[s.explanation_id]["scores"].append(_row_dict(s, SCORE_FIELDS))
    order = {fid: i for i, fid in enumerate(ids)}
    for feature, model_name in sorted(features, key=lambda fm: order[fm[0].id]):
        yield {
            "model": model_name, "layer": feature.layer, "kind": feature.kind, "sae": feature.sae_key or None,
            "index": feature.index, "max_activation": feature.max_activation, "mean": feature.mean,
            "variance": feature.variance, "firing_fraction": feature.firing_fraction, "n_tokens": feature.n_tokens,
            "dead": feature.dead, "quantile_boundaries": feature.quantile_boundaries,
            "records": records.get(feature.id, []), "explanations": explanations.get(feature.id, []),
        }
