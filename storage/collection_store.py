"""Persist a collection: each layer's features, statistics and records in one transaction, marked complete.

A layer counts as collected only when its features carry a `collection_run_id`, and those are written in
the same transaction as the records, so an interrupted collection never leaves a layer that looks done.
"""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.records import FeatureRecords
from storage.repository import (
    add_records,
    find_model,
    get_or_create_feature,
    get_or_create_model,
    get_or_create_sae,
    set_feature_stats,
)
from storage.schema import Feature, Run


def layer_complete(session: Session, model_name: str, layer: int, kind: str, sae: str | None) -> bool:
    """True when a finished collection stored this layer's features (of this kind / SAE)."""
    model = find_model(session, model_name)
    if model is None:
        return False
    found = session.scalar(
        select(Feature.id).where(
            Feature.model_id == model.id, Feature.layer == layer, Feature.kind == kind,
            Feature.sae_key == (sae or ""), Feature.collection_run_id.is_not(None),
        ).limit(1)
    )
    return found is not None


def save_layer(
    session: Session, run: Run, model_name: str, features: Sequence[FeatureRecords], *,
    n_layers: int | None = None, sae_info: dict[str, Any] | None = None,
) -> int:
    """Write one layer (replacing earlier records of these features); call inside the caller's transaction.
    Returns the number of records stored."""
    model = get_or_create_model(session, model_name, n_layers)
    if sae_info is not None:
        info = dict(sae_info)
        get_or_create_sae(session, model, info.pop("name"), **info)
    for fr in features:
        if fr.stats is None:
            raise ValueError(f"feature {fr.feature}: a collected feature needs its statistics")
    # Feature rows first: creating one flushes the session, and pending records would flush with it,
    # one small INSERT batch per feature. Records then go out together when the transaction commits.
    rows = [get_or_create_feature(session, fr.feature, model) for fr in features]
    stored = 0
    with session.no_autoflush:
        for fr, row in zip(features, rows):
            set_feature_stats(row, fr.stats)
            row.collection_run_id = run.id
            stored += add_records(session, row, fr.records, replace=True)
    return stored
