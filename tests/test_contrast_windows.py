"""What the contrastive explainer reads of a feature's neighbours (storage.reads.contrast_windows): their train top
windows only, never a window the example scorers judge, never one of the feature's own held-out windows; the
feature's own activations where it has a record on the window; None without neighbours."""

from __future__ import annotations

from sqlalchemy import select

from storage.core.schema import ActivationRecordRow, Feature
from storage.reads.contrast_windows import contrast_windows, contrast_windows_of
from storage.reads.scoring_inputs import neighbour_windows
from tests.contrast_layer import JUDGED, LEAK, fill_contrast_layer


def _features(session) -> dict[int, Feature]:
    return {f.index: f for f in session.scalars(select(Feature))}


def _text(window) -> str:
    return "".join(window.record.tokens).strip()


def test_train_windows_only_and_none_the_scorers_judge_or_the_feature_holds_out(db):
    fill_contrast_layer(db)
    with db.session() as s:
        features = _features(s)
        shown = contrast_windows(s, features[0])
        judged = neighbour_windows(s, features[0])
        own_held_out = {(r.window_id) for r in s.scalars(select(ActivationRecordRow).where(
            ActivationRecordRow.feature_id == features[0].id, ActivationRecordRow.data_split != "train"))}
        assert shown is not None and judged is not None
        assert [(w.neighbour_index, _text(w)) for w in shown] == [
            (1, "some neighbour1x1 text fires here"), (1, "some neighbour1x2 text fires here"),
            (2, "some neighbour2x1 text fires here"), (2, "some neighbour2x2 text fires here")]
        assert all(w.record.data_split == "train" and w.record.sample == "top" for w in shown)
        # The scorers judge both neighbours' test windows and, feature 2 having one only, its first train window.
        assert JUDGED in {_text(w) for w in judged} and not {_text(w) for w in judged} & {_text(w) for w in shown}
        shown_ids = {r.window_id for r in s.scalars(select(ActivationRecordRow).where(
            ActivationRecordRow.id.in_([w.record.record_id for w in shown])))}
        assert own_held_out and not shown_ids & own_held_out and LEAK not in {_text(w) for w in shown}
        # Feature 0 has a (quiet, train) record on one of them: its activations come along; elsewhere unknown.
        assert [w.own_activations is not None for w in shown] == [True, False, False, False]
        assert shown[0].own_activations == (0.0,) * 5


def test_features_without_neighbours_read_none(db):
    fill_contrast_layer(db)
    with db.session() as s:
        features = _features(s)
        by_id = contrast_windows_of(s, [features[3], features[1]])
        assert by_id[features[3].id] is None
        assert [_text(w) for w in by_id[features[1].id] or []] == [
            "the cat number0 sat on the mat", "the cat number1 sat on the mat"]
