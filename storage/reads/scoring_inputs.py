"""What the example scorers read besides a feature's own records: the top windows of its nearest neighbours
(`Feature.extra["neighbours"]`, written at collection: `[{"index": int, "similarity": float}]`, indices within
the same layer, kind and SAE), each with this feature's own activations on that window where it has a record
there, so windows where it fires are left out."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from activations.records import NeighbourWindow
from activations.vocab import DataSplit, SampleKind
from storage.core.activation_codec import decode
from storage.core.schema import ActivationRecordRow, Feature
from storage.records.record_store import record_of

NEIGHBOURS_KEY = "neighbours"
SCORED_PER_NEIGHBOUR = 2  # top windows the example scorers judge per neighbour


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


@dataclass(frozen=True)
class NeighbourRows:
    """The chosen top records of a feature's neighbours, nearest neighbour first."""

    neighbours: list[tuple[int, float | None]]  # (index, similarity), nearest first
    by_id: dict[int, Feature]  # the neighbours' feature rows by row id
    chosen: dict[int, list[ActivationRecordRow]]  # neighbour row id -> its chosen top records

    @property
    def window_ids(self) -> list[int]:
        return [row.window_id for kept in self.chosen.values() for row in kept]


def neighbour_rows(session: Session, feature: Feature, neighbours: list[tuple[int, float | None]], *,
                   per_neighbour: int, data_splits: Sequence[str] | None = None,
                   skip_windows: Collection[int] = (), sample: str = SampleKind.TOP) -> NeighbourRows:
    """Up to `per_neighbour` records of sample kind `sample` (top, or bottom for a negative side) of each
    neighbour, test split first, then valid, then train (only
    `data_splits` when given), leaving out the windows in `skip_windows`."""
    rows = session.scalars(select(Feature).where(
        Feature.model_id == feature.model_id, Feature.layer == feature.layer, Feature.kind == feature.kind,
        Feature.sae_key == feature.sae_key, Feature.index.in_([index for index, _ in neighbours])))
    by_id = {row.id: row for row in rows}
    # Comparisons, not a value map: only they pass the split through the column's code conversion.
    data_split_order = case((ActivationRecordRow.data_split == DataSplit.TEST, 0),
                            (ActivationRecordRow.data_split == DataSplit.VALID, 1), else_=2)
    query = (select(ActivationRecordRow)
             .where(ActivationRecordRow.feature_id.in_(list(by_id)), ActivationRecordRow.sample == sample)
             .order_by(ActivationRecordRow.feature_id, data_split_order, ActivationRecordRow.position))
    if data_splits is not None:
        query = query.where(ActivationRecordRow.data_split.in_(list(data_splits)))
    chosen: dict[int, list[ActivationRecordRow]] = {}
    for row in session.scalars(query):
        kept = chosen.setdefault(row.feature_id, [])
        if len(kept) < per_neighbour and row.window_id not in skip_windows:
            kept.append(row)
    return NeighbourRows(neighbours, by_id, chosen)


def own_records(session: Session, feature: Feature, window_ids: Sequence[int]) -> dict[int, ActivationRecordRow]:
    """The feature's own record on each of `window_ids` where it has one (window id -> record row)."""
    return {row.window_id: row for row in session.scalars(
        select(ActivationRecordRow)
        .where(ActivationRecordRow.feature_id == feature.id, ActivationRecordRow.window_id.in_(list(window_ids))))}


def as_windows(found: NeighbourRows, own: dict[int, ActivationRecordRow]) -> list[NeighbourWindow]:
    """The chosen records as NeighbourWindows, nearest neighbour first, with the feature's own activations."""
    similarity = dict(found.neighbours)
    rank = {index: i for i, (index, _) in enumerate(found.neighbours)}
    out = []
    for feature_row_id in sorted(found.chosen, key=lambda fid: rank[found.by_id[fid].index]):
        neighbour = found.by_id[feature_row_id]
        for row in found.chosen[feature_row_id]:
            mine = own.get(row.window_id)
            out.append(NeighbourWindow(neighbour.index, similarity[neighbour.index], record_of(row),
                                       None if mine is None else tuple(decode(mine.activations))))
    return out


def neighbour_windows(session: Session, feature: Feature, *, per_neighbour: int = SCORED_PER_NEIGHBOUR,
                      sample: str = SampleKind.TOP) -> list[NeighbourWindow] | None:
    """Up to `per_neighbour` top windows of each stored neighbour (test split first, then valid, then train),
    nearest neighbour first; None when the feature has no neighbours stored. `sample`: bottom for a negative
    explanation, whose hard negatives are the neighbours' most negative windows."""
    neighbours = neighbour_indices(feature)
    if neighbours is None:
        return None
    found = neighbour_rows(session, feature, neighbours, per_neighbour=per_neighbour, sample=sample)
    return as_windows(found, own_records(session, feature, found.window_ids))
