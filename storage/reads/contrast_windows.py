"""What the contrastive explainer reads besides a feature's own records: top windows of its nearest neighbours
(hard negatives, once the explainer has checked that the feature is quiet on them) that the explainer may see.

A window qualifies only when it is in the neighbour's train split, is none of the windows the example scorers
judge as the feature's `neighbours` subset (storage/reads/scoring_inputs.py), and is none of the feature's own
valid or test windows (the simulation scores those): the explainer never sees a window it is scored on."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from activations.records import NeighbourWindow
from activations.vocab import DataSplit, SampleKind
from storage.core.schema import ActivationRecordRow, Feature
from storage.reads.scoring_inputs import (
    SCORED_PER_NEIGHBOUR,
    as_windows,
    neighbour_indices,
    neighbour_rows,
    own_records,
)

PER_NEIGHBOUR = 2  # train top windows read per neighbour: the explainer shows a few of all the neighbours'


def _held_out_windows(session: Session, feature: Feature) -> set[int]:
    """The windows of the feature's own valid and test records."""
    return set(session.scalars(select(ActivationRecordRow.window_id).where(
        ActivationRecordRow.feature_id == feature.id,
        ActivationRecordRow.data_split.in_([DataSplit.VALID.value, DataSplit.TEST.value]))))


def contrast_windows(session: Session, feature: Feature, *, per_neighbour: int = PER_NEIGHBOUR,
                     sample: str = SampleKind.TOP) -> list[NeighbourWindow] | None:
    """Up to `per_neighbour` train-split windows of sample kind `sample` (top, or bottom for a negative side) of
    each stored neighbour, strongest first, nearest neighbour first, with the feature's own activations where it has
    a record there; None when it has no neighbours stored."""
    neighbours = neighbour_indices(feature)
    if neighbours is None:
        return None
    judged = neighbour_rows(session, feature, neighbours, per_neighbour=SCORED_PER_NEIGHBOUR,
                            sample=sample).window_ids
    found = neighbour_rows(session, feature, neighbours, per_neighbour=per_neighbour,
                           data_splits=[DataSplit.TRAIN.value],
                           skip_windows={*judged, *_held_out_windows(session, feature)}, sample=sample)
    return as_windows(found, own_records(session, feature, found.window_ids))


def contrast_windows_of(session: Session, features: Sequence[Feature], *,
                        sample: str = SampleKind.TOP) -> dict[int, list[NeighbourWindow] | None]:
    """contrast_windows of each feature, by feature row id."""
    return {feature.id: contrast_windows(session, feature, sample=sample) for feature in features}
