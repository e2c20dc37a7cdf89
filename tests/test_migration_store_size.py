"""Migration 0008 stores activation records' sample kind and data split as small integer codes and, on SQLite,
indexes records by feature only: on SQLite and PostgreSQL, an existing database's records read back the same
through the normal read paths (every kind, `bottom` and two-digit quantile bins included), a value with no code
stops the migration, and the downgrade restores the text and the unique slot."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.core import repository as repo
from storage.core.activation_codec import encode
from storage.core.db import Database, make_engine, upgrade
from storage.core.record_codes import sample_code, sample_of
from storage.records import record_store
from tests.migrating import downgrade

PREVIOUS = "0007_record_max_dropped"
TOKENS = ["The", " river", " rose"]
ROWS = [("top", "test", 0, [3.0, 1.0, 0.5]), ("top", "train", 1, [2.0, 0.0, 0.25]),
        ("random", "valid", 0, [0.0, 0.1, 0.0]), ("bottom", "test", 0, [-4.0, 0.0, -1.0]),
        ("quantile:3", "train", 0, [0.5, 0.0, 0.0]), ("quantile:12", "valid", 0, [0.75, 0.0, 0.0])]


def _previous_revision(url: str, rows=ROWS) -> int:
    """A database at the previous revision holding records as that schema stored them; the feature's id."""
    engine = make_engine(url)
    upgrade(engine, PREVIOUS)
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        model = conn.execute(sa.insert(t["subject_models"]).values(name="m", meta={})).inserted_primary_key[0]
        feature = conn.execute(sa.insert(t["features"]).values(
            model_id=model, layer=2, kind="mlp_neuron", sae_key="", index=7, dead=False, extra={},
            max_activation=3.0)).inserted_primary_key[0]
        for k, (sample, data_split, position, acts) in enumerate(rows):
            window = conn.execute(sa.insert(t["windows"]).values(
                model_id=model, content_hash=f"h{k}", corpus="wiki", document=f"doc{k}", offset=3 * k,
                tokens=TOKENS, token_ids=None)).inserted_primary_key[0]
            conn.execute(sa.insert(t["activation_records"]).values(
                feature_id=feature, window_id=window, sample=sample, data_split=data_split, position=position,
                activations=encode(acts)))
    engine.dispose()
    return feature


def test_codes_round_trip():
    for sample in ("top", "random", "bottom", "quantile:0", "quantile:9", "quantile:123"):
        assert sample_of(sample_code(sample)) == sample
    with pytest.raises(ValueError, match="'quantile:x' has no stored code"):
        sample_code("quantile:x")


def test_records_read_back_the_same_as_codes(db_url):
    feature_id = _previous_revision(db_url)
    db = Database(db_url)  # opening migrates to head
    inspector = sa.inspect(db.engine)
    types = {c["name"]: c["type"] for c in inspector.get_columns("activation_records")}
    assert isinstance(types["sample"], sa.SmallInteger) and isinstance(types["data_split"], sa.SmallInteger)
    uniques = [u["column_names"] for u in inspector.get_unique_constraints("activation_records")]
    indexes = [i["column_names"] for i in inspector.get_indexes("activation_records")]
    if db.engine.dialect.name == "sqlite":
        assert uniques == [] and indexes == [["feature_id"]]
    else:
        assert uniques == [["feature_id", "sample", "position"]]
    with db.session() as s:
        records = record_store.load_records(s, repo.get_feature(s, feature_id))
        assert sorted((r.sample, r.data_split, r.label, list(r.activations)) for r in records) == sorted(
            (sample, split, f"{sample}[{position}]", acts) for sample, split, position, acts in ROWS)
        stored = s.execute(sa.text("SELECT sample, data_split FROM activation_records ORDER BY id")).all()
    assert [tuple(row) for row in stored] == [(0, 2), (0, 0), (1, 1), (2, 2), (19, 0), (28, 1)]
    db.dispose()


def test_a_value_without_a_code_stops_the_migration(db_url):
    _previous_revision(db_url, [*ROWS, ("middle", "train", 0, [1.0, 0.0, 0.0])])
    engine = make_engine(db_url)
    with pytest.raises(RuntimeError, match="sample 'middle' / data split 'train' has no stored code"):
        upgrade(engine)
    with engine.connect() as conn:  # nothing was changed
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == PREVIOUS
        assert conn.execute(sa.text("SELECT count(*) FROM activation_records WHERE sample = 'middle'")).scalar() == 1
    engine.dispose()


def test_the_codes_go_back(db_url):
    _previous_revision(db_url)
    engine = make_engine(db_url)
    upgrade(engine)
    downgrade(engine, PREVIOUS)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT sample, data_split, position FROM activation_records ORDER BY id")).all()
    inspector = sa.inspect(engine)
    uniques = [u["column_names"] for u in inspector.get_unique_constraints("activation_records")]
    nullable = {c["name"]: c["nullable"] for c in inspector.get_columns("activation_records")}
    engine.dispose()
    assert [tuple(r) for r in rows] == [(sample, split, position) for sample, split, position, _ in ROWS]
    assert uniques == [["feature_id", "sample", "position"]]
    assert nullable["sample"] is False and nullable["data_split"] is False
