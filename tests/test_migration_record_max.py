"""Migration 0007 drops `activation_records.max_activation` in an existing database, SQLite and PostgreSQL:
the column is gone, every record reads back the same through the normal read paths (its max now taken from
its activations), and a downgrade puts the column back, filled from the activations."""

from __future__ import annotations

import sqlalchemy as sa

from storage.core import repository as repo
from storage.core.activation_codec import encode
from storage.core.db import Database, make_engine, upgrade
from storage.reads.feature_detail import feature_detail
from storage.records import record_store
from tests.migrating import downgrade

TOKENS = ["The", " river", " rose", " 12", " feet"]
# (sample kind, data split, position, activations); the last is float32-only, the first negative everywhere
ROWS = [("top", "test", 0, [-0.5, -2.5, -0.25, -4.0, -1.0]), ("top", "train", 1, [0.0, 1.0, 0.0, 3.0, 0.0]),
        ("random", "test", 0, [0.0, 0.0, 0.1, 0.0, 0.0])]


def _previous_revision(url: str) -> int:
    """A database at revision 0006 holding records written the way that schema stored them; the feature's id."""
    engine = make_engine(url)
    upgrade(engine, "0006_sample_column")
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        model = conn.execute(sa.insert(t["subject_models"]).values(name="m", meta={})).inserted_primary_key[0]
        feature = conn.execute(sa.insert(t["features"]).values(
            model_id=model, layer=2, kind="mlp_neuron", sae_key="", index=7, dead=False, extra={},
            max_activation=3.0)).inserted_primary_key[0]
        for k, (sample, data_split, position, acts) in enumerate(ROWS):
            window = conn.execute(sa.insert(t["windows"]).values(
                model_id=model, content_hash=f"h{k}", corpus="wiki", document=f"doc{k}", offset=5 * k,
                tokens=TOKENS, token_ids=None)).inserted_primary_key[0]
            conn.execute(sa.insert(t["activation_records"]).values(
                feature_id=feature, window_id=window, sample=sample, data_split=data_split, position=position,
                activations=encode(acts), max_activation=max(acts)))
    engine.dispose()
    return feature


def test_records_read_back_the_same_without_the_max_column(db_url):
    feature_id = _previous_revision(db_url)
    db = Database(db_url)  # opening migrates to head
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("activation_records")}
    assert "max_activation" not in columns and "activations" in columns, columns
    with db.session() as s:
        records = record_store.load_records(s, repo.get_feature(s, feature_id))
        assert sorted((r.sample, r.data_split, list(r.activations), r.max_activation) for r in records) == sorted(
            (sample, data_split, acts, max(acts)) for sample, data_split, _, acts in ROWS)
        detail = feature_detail(s, feature_id)
        assert detail is not None
        assert {sample: [(r["position"], r["max_activation"]) for r in rows]
                for sample, rows in detail["records"].items()} == {
            "top": [(0, -0.25), (1, 3.0)], "random": [(0, 0.1)]}
    db.dispose()


def test_the_drop_goes_back(db_url):
    _previous_revision(db_url)
    engine = make_engine(db_url)
    upgrade(engine)
    downgrade(engine, "0006_sample_column")
    with engine.connect() as conn:
        maxes = conn.execute(sa.text("SELECT max_activation FROM activation_records ORDER BY id")).scalars().all()
    nullable = {c["name"]: c["nullable"] for c in sa.inspect(engine).get_columns("activation_records")}
    engine.dispose()
    assert maxes == [max(acts) for *_, acts in ROWS]
    assert nullable["max_activation"] is False
