"""A feature's activation records: stored numbered by position within their sample kind (tokens and
provenance live in their window, shared by every feature that picked it), and read back with their row ids.
Callers own the transaction, as with storage/core/repository.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from activations.records import ActivationRecord, FeatureRecords, Provenance
from storage.core.activation_codec import decode, decode_ids, encode
from storage.core.in_lists import chunks
from storage.core.repository import feature_id_of, stats_of
from storage.core.schema import ActivationRecordRow, Feature, Window
from storage.records.windows import window_ids

_RECORDS = cast(Table, ActivationRecordRow.__table__)
_WINDOWS = cast(Table, Window.__table__)
_IN_CHUNK = 500  # ids per IN list of a bulk read


def add_records(
    session: Session, feature: Feature, records: Sequence[ActivationRecord], *, replace: bool = False
) -> int:
    """Store records, numbered by position within their sample kind. Existing (sample, position) slots are kept
    unless `replace`, so importing the same file twice adds nothing. Returns how many rows were added."""
    if replace:
        session.execute(delete(ActivationRecordRow).where(ActivationRecordRow.feature_id == feature.id))
        existing: set[tuple[str, int]] = set()
    else:
        existing = {(sample, position) for sample, position in session.execute(
            select(ActivationRecordRow.sample, ActivationRecordRow.position)
            .where(ActivationRecordRow.feature_id == feature.id))}
    new = [(record, position) for record, position in numbered(records) if (record.sample, position) not in existing]
    windows = window_ids(session, feature.model_id, [record for record, _ in new])
    session.add_all(ActivationRecordRow(**record_values(feature.id, record, position, window_id))
                    for (record, position), window_id in zip(new, windows))
    return len(new)


def numbered(records: Sequence[ActivationRecord]) -> Iterator[tuple[ActivationRecord, int]]:
    """Each record with its position within its sample kind (0 = first of that kind)."""
    positions: dict[str, int] = {}
    for record in records:
        position = positions.get(record.sample, 0)
        positions[record.sample] = position + 1
        yield record, position


def record_values(feature_id: int, record: ActivationRecord, position: int, window_id: int) -> dict[str, Any]:
    """Column values of one activation record row (its tokens and provenance live in its window)."""
    return {
        "feature_id": feature_id, "window_id": window_id, "sample": record.sample, "data_split": record.data_split,
        "position": position, "activations": encode(record.activations),
    }


def _record(record_id: int, sample: str, data_split: str, position: int, activations: bytes, tokens: Sequence[str],
            corpus: str | None, document: str | None, offset: int | None, token_ids: bytes | None) -> ActivationRecord:
    """A record from its stored columns and its window's (validated when written, so not checked again)."""
    return ActivationRecord.stored(
        tuple(tokens), tuple(decode(activations)), sample, data_split, Provenance(corpus, document, offset),
        f"{sample}[{position}]", record_id, tuple(decode_ids(token_ids)) if token_ids is not None else None,
    )


def record_of(row: ActivationRecordRow) -> ActivationRecord:
    """A record from its ORM row and joined window."""
    window = row.window
    return _record(row.id, row.sample, row.data_split, row.position, row.activations, window.tokens, window.corpus,
                   window.document, window.offset, window.token_ids)


# A record's columns and its window's, read as plain rows (Core): no ORM entity per record and window.
_RECORD_ROWS = (
    select(_RECORDS.c.feature_id, _RECORDS.c.id, _RECORDS.c.sample, _RECORDS.c.data_split, _RECORDS.c.position,
           _RECORDS.c.activations, _WINDOWS.c.tokens, _WINDOWS.c.corpus, _WINDOWS.c.document, _WINDOWS.c.offset,
           _WINDOWS.c.token_ids)
    .join_from(_RECORDS, _WINDOWS, _WINDOWS.c.id == _RECORDS.c.window_id)
    .order_by(_RECORDS.c.feature_id, _RECORDS.c.id)  # the feature index's own order: no sort in SQL
)
# Sample kind (as text) then position, within a feature: sorted here, a feature's rows at a time, where SQL would
# sort every row read, window tokens included (on SQLite the index is by feature only: migration 0008).
_SLOT_ORDER = itemgetter(2, 4)


def records_by_feature(session: Session, feature_ids: Sequence[int]) -> dict[int, list[ActivationRecord]]:
    """The stored records (each with its row id) of many features in one query, each feature's in sample then
    position order; features without records are absent."""
    out: dict[int, list[ActivationRecord]] = {}
    for chunk in chunks(feature_ids, _IN_CHUNK):
        rows = session.execute(_RECORD_ROWS.where(_RECORDS.c.feature_id.in_(chunk)))
        for feature_id, group in groupby(rows, key=itemgetter(0)):  # one feature's few rows in memory at a time
            out[feature_id] = [_record(*row[1:]) for row in sorted(group, key=_SLOT_ORDER)]
    return out


def load_records(session: Session, feature: Feature) -> list[ActivationRecord]:
    """A feature's stored records (each with its row id), in sample then position order."""
    return records_by_feature(session, [feature.id]).get(feature.id, [])


def load_feature_records(session: Session, feature: Feature) -> FeatureRecords:
    return FeatureRecords(
        feature=feature_id_of(feature), records=load_records(session, feature), stats=stats_of(feature)
    )


def load_many_feature_records(session: Session, features: Sequence[Feature]) -> dict[int, FeatureRecords]:
    """`load_feature_records` of many features (feature row id -> records), their records read in one query."""
    records = records_by_feature(session, [f.id for f in features])
    return {f.id: FeatureRecords(feature=feature_id_of(f), records=records.get(f.id, []), stats=stats_of(f))
            for f in features}


def any_sampled_as(session: Session, feature_ids: Sequence[int], sample: str) -> bool:
    """Whether any of these features has a record of this sample kind (one small query per chunk of ids)."""
    stmt = select(_RECORDS.c.id).where(_RECORDS.c.sample == sample).limit(1)
    return any(session.execute(stmt.where(_RECORDS.c.feature_id.in_(chunk))).first() is not None
               for chunk in chunks(feature_ids, _IN_CHUNK))
