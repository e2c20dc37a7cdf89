"""save_layer: bulk writes keep the per-layer semantics (run marker, dead features, overwrite, positions)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from activations.records import ActivationRecord, FeatureId, FeatureRecords, FeatureStats, Provenance
from storage.core.schema import ActivationRecordRow, Feature, Run
from storage.records.collection_store import layer_corpus, save_layer
from storage.records.record_store import load_feature_records, load_many_feature_records
from storage.results.runs import start_run
from tests.stored import store_features

MODEL = "tiny-model"


def _layer(n: int, scale: float, layer: int = 2, sae: str | None = None) -> list[FeatureRecords]:
    kind = "sae_latent" if sae else "mlp_neuron"
    out = []
    for i in range(n):
        fid = FeatureId(model=MODEL, layer=layer, kind=kind, index=i, sae=sae)
        dead = i == 0
        records = [
            ActivationRecord(["a", "b"], [scale * (i + 1), float(j)], sample=sample, data_split="test" if j else "train",
                             provenance=Provenance("wiki", f"doc{j}", 4 * j), label=f"{sample}[{j}]", feature=fid)
            for sample in ([] if dead else ["top", "quantile:0"]) + ["random"] for j in range(2)
        ]
        stats = FeatureStats(max_activation=0.0 if dead else scale * (i + 1), mean=0.1, variance=0.2,
                             firing_fraction=0.0 if dead else 0.5, n_tokens=100, quantile_boundaries=(1.0,), min_activation=-0.5)
        out.append(FeatureRecords(fid, records, stats))
    return out


def _save(db, features, **kwargs) -> tuple[int, int]:
    with db.session() as s, s.begin():
        run_id = start_run(s, "collect", {})
        return run_id, save_layer(s, run_id, MODEL, features, n_layers=4, **kwargs)


def test_save_layer_stores_stats_records_dead_features_and_overwrites(db):
    with db.session() as s, s.begin():  # a feature known from an import before any collection
        store_features(s, [FeatureId(model=MODEL, layer=2, kind="mlp_neuron", index=3)])[0]
        assert layer_corpus(s, MODEL, 2, "mlp_neuron", None) is None  # not collected
    first_run, stored = _save(db, _layer(5, scale=1.0))
    assert stored == 4 * 6 + 2
    with db.session() as s:
        assert layer_corpus(s, MODEL, 2, "mlp_neuron", None) == "an unrecorded corpus"  # the run's config is {}
        feats = s.scalars(select(Feature).order_by(Feature.index)).all()
        assert [f.index for f in feats] == [0, 1, 2, 3, 4] and {f.collection_run_id for f in feats} == {first_run}
        assert feats[0].dead and feats[0].n_tokens == 100 and not feats[3].dead and feats[3].max_activation == 4.0
        loaded = load_feature_records(s, feats[3])
        assert loaded.stats.quantile_boundaries == (1.0,) and loaded.stats.min_activation == -0.5
        assert [(r.sample, r.label, r.data_split) for r in loaded.select(samples=["top"])] == [("top", "top[0]", "train"), ("top", "top[1]", "test")]
        assert loaded.records[0].provenance == Provenance("wiki", "doc0", 0)
        assert {r.sample for r in load_feature_records(s, feats[0]).records} == {"random"}

    second_run, stored = _save(db, _layer(4, scale=10.0))  # overwrite: replaced, never doubled
    assert stored == 20
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ActivationRecordRow)) == 26  # feature 4 kept its 6
        assert s.scalar(select(func.count()).select_from(Feature)) == 5
        feat = s.scalars(select(Feature).where(Feature.index == 3)).one()
        assert feat.collection_run_id == second_run and feat.max_activation == 40.0
        assert max(r.max_activation for r in load_feature_records(s, feat).records) == 40.0
        assert s.get(Run, first_run) is not None


def test_save_layer_creates_the_sae_and_refuses_mixed_layers(db):
    _save(db, _layer(3, scale=1.0, sae="res-16"), sae_info={"name": "res-16", "layer": 2, "hook": "blocks.2.hook_resid_post", "width": 3})
    with db.session() as s:
        feats = s.scalars(select(Feature).order_by(Feature.index)).all()
        assert [f.kind for f in feats] == ["sae_latent"] * 3 and {f.sae.name for f in feats} == {"res-16"}
        assert feats[0].sae.hook == "blocks.2.hook_resid_post"
    with pytest.raises(ValueError, match="save_layer stores one layer"):
        _save(db, _layer(2, scale=1.0) + _layer(2, scale=1.0, layer=3))


def test_stored_records_read_back_as_written_one_feature_or_many(db):
    """The store's reads (Core rows, records built without validating again) give the records as written: same
    order, labels, provenance, token ids and row ids, whether read one feature at a time or many at once."""
    features = _layer(4, scale=1.0)
    # Windows of their own (a window's token ids are those of its first writer).
    with_ids = [ActivationRecord(["c", "d"], r.activations, sample=r.sample, data_split=r.data_split,
                                 provenance=r.provenance, label=r.label, token_ids=[7, 8]) for r in features[2].records]
    features[2] = FeatureRecords(features[2].feature, with_ids, features[2].stats)
    _save(db, features)
    with db.session() as s:
        rows = s.scalars(select(Feature).order_by(Feature.index)).all()
        many = load_many_feature_records(s, rows)
        for row, written in zip(rows, features):
            one = load_feature_records(s, row)
            assert one == many[row.id] and one.feature == written.feature
            assert sorted(one.records, key=lambda r: (r.sample, r.label)) == sorted(written.records, key=lambda r: (r.sample, r.label))
            assert [r.label for r in one.records] == [f"{r.sample}[{r.label[-2]}]" for r in one.records]
            assert [r.sample for r in one.records] == sorted(r.sample for r in one.records)
            slots = s.execute(select(ActivationRecordRow.sample, ActivationRecordRow.position, ActivationRecordRow.id)
                              .where(ActivationRecordRow.feature_id == row.id)).all()
            assert [r.record_id for r in one.records] == [i for *_, i in sorted(slots)]  # sample text, position
            assert all(isinstance(a, float) for r in one.records for a in r.activations)
        assert [r.token_ids for r in many[rows[2].id].records] == [(7, 8)] * len(with_ids)
        assert many[rows[1].id].records[0].token_ids is None
