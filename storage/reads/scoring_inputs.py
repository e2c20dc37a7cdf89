"""What the example scorers read besides a feature's own records: the top windows of its nearest neighbours
(`Feature.extra["neighbours"]`, written at collection: `[{"index": int, "similarity": float}]`, indices within
the same layer, kind and SAE), each with this feature's own activations on that window where it has a record
there, so windows where it fires are left out."""

from __future__ import annotations

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from activations.vocab import DataSplit, SampleKind
from scorer.example_sets import NeighbourWindow
from storage.core.activation_codec import decode
from storage.core.schema import ActivationRecordRow, Feature
from storage.records.record_store import record_of

NEIGHBOURS_KEY = "neighbours"


def neighbour_indices(feature: Feature) -> list[tuple[int, float | None]] | None:
    """(index, similarity) of the stored nearest neighbours, nearest first; None when none were computed."""
    stored = (feature.extra or {}).get(NEIGHBOURS_KEY)
    if not stored:
        return None
    out = []
    for entry in stored:
        if isinstance(entry, dict) and isinstance(entry.get("index"), int) and entry["index"] != feature.index:
            similarity = entry.get("similarity")
            out.append((entry["index"], float(similarity) if isinstance(similarity, (int, float)) else None))
    return out or None


def neighbour_windows(session: Session, feature: Feature, *, per_neighbour: int = 2,
                      sample: str = SampleKind.TOP) -> list[NeighbourWindow] | None:
    """Up to `per_neighbour` top windows of each stored neighbour (test split first, then valid, then train),
    nearest neighbour first; None when the feature has no neighbours stored. `sample`: bottom for a negative
    explanation, whose hard negatives are the neighbours' most negative windows."""
    neighbours = neighbour_indices(feature)
    if neighbours is None:
        return None
    similarity = dict(neighbours)
    rows = session.scalars(select(Feature).where(
        Feature.model_id == feature.model_id, Feature.layer == feature.layer, Feature.kind == feature.kind,
        Feature.sae_key == feature.sae_key, Feature.index.in_(list(similarity))))
    by_id = {row.id: row for row in rows}
    data_split_order = case({DataSplit.TEST.value: 0, DataSplit.VALID.value: 1}, value=ActivationRecordRow.data_split,
                       else_=2)
    records = session.scalars(
        select(ActivationRecordRow)
        .where(ActivationRecordRow.feature_id.in_(list(by_id)), ActivationRecordRow.sample == sample)
        .order_by(ActivationRecordRow.feature_id, data_split_order, ActivationRecordRow.position)
    ).all()
    chosen: dict[int, list[ActivationRecordRow]] = {}
    for row in records:
        kept = chosen.setdefault(row.feature_id, [])
        if len(kept) < per_neighbour:
            kept.append(row)
    window_ids = [row.window_id for kept in chosen.values() for row in kept]
    own = {window_id: tuple(decode(acts)) for window_id, acts in session.execute(
        select(ActivationRecordRow.window_id, ActivationRecordRow.activations)
        .where(ActivationRecordRow.feature_id == feature.id, ActivationRecordRow.window_id.in_(window_ids)))}
    out = []
    rank = {index: i for i, (index, _) in enumerate(neighbours)}
    for feature_row_id in sorted(chosen, key=lambda fid: rank[by_id[fid].index]):
        neighbour = by_id[feature_row_id]
        for row in chosen[feature_row_id]:
            out.append(NeighbourWindow(neighbour.index, similarity[neighbour.index],
                                       record_of(row), own.get(row.window_id)))
    return out
