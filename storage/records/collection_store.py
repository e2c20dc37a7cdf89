"""Persist a collection: each layer's features, statistics and records in one transaction, marked complete.

A layer counts as collected only when its features carry a `collection_run_id`, and those are written in
the same transaction as the records, so an interrupted collection never leaves a layer that looks done.
Writes are Core executemany statements on the tables (one per table per chunk), not ORM objects: a layer
holds ~100k records, and per-object ORM work made saving slower than collecting. Each distinct context window
is written once (storage.records.windows); a record is its window id plus binary activations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from activations.records import FeatureId, FeatureRecords, FeatureStats
from storage.core.in_lists import chunks
from storage.core.repository import find_model, get_or_create_model, get_or_create_sae, stats_values
from storage.core.schema import ActivationRecordRow, Feature, Run
from storage.records.record_store import numbered, record_values
from storage.records.windows import window_ids

# Inserts go to the tables (Core), not the mapped classes: no per-row ORM work.
_RECORDS_TABLE = cast(Table, ActivationRecordRow.__table__)
_FEATURES_TABLE = cast(Table, Feature.__table__)


def layer_corpus(session: Session, model_name: str, layer: int, kind: str, sae: str | None) -> str | None:
    """The corpus a finished collection of this layer ran over, as its run recorded it (None when the layer is
    not collected; "an unrecorded corpus" for a run that kept no corpus name)."""
    model = find_model(session, model_name)
    if model is None:
        return None
    config = session.scalar(
        select(Run.config).join(Feature, Feature.collection_run_id == Run.id).where(
            Feature.model_id == model.id, Feature.layer == layer, Feature.kind == kind,
            Feature.sae_key == (sae or ""),
        ).limit(1)
    )
    if config is None:
        return None
    return str(config.get("corpus") or "an unrecorded corpus")


def save_layer(
    session: Session, run_id: int, model_name: str, features: Sequence[FeatureRecords], *,
    n_layers: int | None = None, sae_info: dict[str, Any] | None = None, extras: Mapping[int, dict] | None = None,
) -> int:
    """Write one layer (replacing earlier records of these features); call inside the caller's transaction.
    Every feature must be of the same layer, kind and SAE. `extras` (feature index -> keys such as
    `neighbours` and `logits`) is merged into each feature's `extra`. Returns the number of records stored."""
    if not features:
        return 0
    first = features[0].feature
    stats: dict[int, FeatureStats] = {}  # feature index -> statistics
    for fr in features:
        fid = fr.feature
        if (fid.model, fid.layer, fid.kind, fid.sae) != (model_name, first.layer, first.kind, first.sae):
            raise ValueError(
                f"feature {fid}: save_layer stores one layer of {model_name}, like {first}; save the others separately"
            )
        if fr.stats is None:
            raise ValueError(f"feature {fid}: a collected feature needs its statistics")
        stats[fid.index] = fr.stats
    model = get_or_create_model(session, model_name, n_layers)
    sae_id = None
    if first.sae is not None:
        info = dict(sae_info or {"name": first.sae, "layer": first.layer})
        sae_id = get_or_create_sae(session, model, info.pop("name"), **info).id
    ids = _upsert_features(session, run_id, model.id, sae_id, first, stats, extras or {})
    # Only these features: others keep their records.
    for id_chunk in chunks(ids[fr.feature.index] for fr in features):
        session.execute(delete(ActivationRecordRow).where(ActivationRecordRow.feature_id.in_(id_chunk)))
    # Windows once for the whole layer: the same few windows are shared by most of its records.
    windows = iter(window_ids(session, model.id, [record for fr in features for record in fr.records]))
    rows = (
        record_values(ids[fr.feature.index], record, position, next(windows))
        for fr in features
        for record, position in numbered(fr.records)
    )
    stored = 0
    for chunk in chunks(rows):
        session.execute(insert(_RECORDS_TABLE), chunk)
        stored += len(chunk)
    return stored


def _upsert_features(
    session: Session, run_id: int, model_id: int, sae_id: int | None, first: FeatureId, stats: dict[int, FeatureStats],
    extras: Mapping[int, dict],
) -> dict[int, int]:
    """Insert missing feature rows of `first`'s layer, update existing ones; every row gets its stats and the run.
    Returns index -> id."""
    layer_rows = select(Feature.index, Feature.id).where(
        Feature.model_id == model_id, Feature.layer == first.layer, Feature.kind == first.kind,
        Feature.sae_key == (first.sae or ""),
    )
    ids: dict[int, int] = dict(session.execute(layer_rows).all())
    values = {index: {**stats_values(s), "collection_run_id": run_id} for index, s in stats.items()}
    if extras:  # merged over what earlier collections or imports stored
        old_extra: dict[int, dict] = {}
        extra_of = select(Feature.index, Feature.extra)
        for id_chunk in chunks(ids[i] for i in values if i in ids):
            old_extra.update(session.execute(extra_of.where(Feature.id.in_(id_chunk))).all())
        for i, v in values.items():  # every row gets the key: one executemany needs the same columns throughout
            v["extra"] = {**(old_extra.get(i) or {}), **extras.get(i, {})}
    existing = [{"id": ids[i], **v} for i, v in values.items() if i in ids]
    new = [
        {"model_id": model_id, "layer": first.layer, "kind": first.kind, "sae_id": sae_id, "sae_key": first.sae or "",
         "index": i, "extra": {}, **v}
        for i, v in values.items() if i not in ids
    ]
    for chunk in chunks(existing):
        session.execute(update(Feature), chunk)  # ORM bulk UPDATE by primary key: one executemany
    for chunk in chunks(new):
        session.execute(insert(_FEATURES_TABLE), chunk)
    if new:
        ids = dict(session.execute(layer_rows).all())
    return ids

