"""Migration 0006 renames the sample-kind column `split` to `sample` (activation and simulated records) in an
existing database, SQLite and PostgreSQL: every record and simulated record reads back the same through the
normal read paths, the unique (feature, sample, position) constraint still holds, and a downgrade goes back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from storage.core import repository as repo
from storage.core.activation_codec import encode
from storage.core.db import Database, make_engine, upgrade
from storage.core.schema import ActivationRecordRow
from storage.reads.feature_detail import feature_detail
from storage.records import record_store
from tests.migrating import downgrade

TOKENS = ["The", " river", " rose", " 12", " feet"]
# (sample kind, data split, position, activations) as a collection stores them
ROWS = [("top", "test", 0, [0.0, 2.5, 0.5, 4.0, 0.0]), ("top", "train", 1, [0.0, 1.0, 0.0, 3.0, 0.0]),
        ("random", "test", 0, [0.0, 0.0, 0.25, 0.0, 0.0]), ("quantile:0", "valid", 0, [0.5, 0.0, 0.0, 0.0, 1.5])]
NOW = datetime.now(UTC)


def _previous_revision(url: str) -> dict[str, int]:
    """A database at revision 0005 holding records and a simulation, written the way that schema stored them."""
    engine = make_engine(url)
    upgrade(engine, "0005_leases")
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        model = conn.execute(sa.insert(t["subject_models"]).values(name="m", meta={})).inserted_primary_key[0]
        feature = conn.execute(sa.insert(t["features"]).values(
            model_id=model, layer=2, kind="mlp_neuron", sae_key="", index=7, dead=False, extra={},
            max_activation=4.0)).inserted_primary_key[0]
        records = {}
        for k, (sample, data_split, position, acts) in enumerate(ROWS):
            window = conn.execute(sa.insert(t["windows"]).values(
                model_id=model, content_hash=f"h{k}", corpus="wiki", document=f"doc{k}", offset=5 * k,
                tokens=TOKENS, token_ids=None)).inserted_primary_key[0]
            records[sample, position] = conn.execute(sa.insert(t["activation_records"]).values(
                feature_id=feature, window_id=window, split=sample, data_split=data_split, position=position,
                activations=encode(acts), max_activation=max(acts))).inserted_primary_key[0]
        explanation = conn.execute(sa.insert(t["explanations"]).values(
            feature_id=feature, status="ok", text="rivers", explainer="openai:x", params={}, config_hash="h",
            polarity="positive", candidate=0, selected=True, created_at=NOW)).inserted_primary_key[0]
        simulation = conn.execute(sa.insert(t["simulations"]).values(
            explanation_id=explanation, feature_id=feature, simulator="embedding", config_hash="s", role="own",
            status="ok", params={}, created_at=NOW)).inserted_primary_key[0]
        conn.execute(sa.insert(t["simulated_records"]), [
            {"simulation_id": simulation, "position": 0, "record_id": records["top", 0], "split": "top",
             "tokens": None, "true_activations": None, "expected_activations": encode([0.0, 1.0, 0.0, 2.0, 0.0])},
            {"simulation_id": simulation, "position": 1, "record_id": None, "split": "random", "tokens": TOKENS,
             "true_activations": encode([0.0, 0.5, 0.0, 0.0, 0.0]),
             "expected_activations": encode([0.0, 0.0, 1.0, 0.0, 0.0])},
        ])
    engine.dispose()
    return {"feature": feature, "top0": records["top", 0]}


def test_records_and_simulations_read_back_the_same_after_the_rename(db_url):
    ids = _previous_revision(db_url)
    db = Database(db_url)  # opening migrates to head
    inspector = sa.inspect(db.engine)
    for table in ("activation_records", "simulated_records"):
        columns = {c["name"] for c in inspector.get_columns(table)}
        assert "sample" in columns and "split" not in columns, (table, columns)
    with db.session() as s:
        records = record_store.load_records(s, repo.get_feature(s, ids["feature"]))
        assert sorted((r.sample, r.data_split, r.label, list(r.tokens), list(r.activations), r.provenance.document)
                      for r in records) == sorted(
            (sample, data_split, f"{sample}[{position}]", TOKENS, acts, f"doc{k}")
            for k, (sample, data_split, position, acts) in enumerate(ROWS))
        detail = feature_detail(s, ids["feature"])
        assert detail is not None
        assert {sample: [(r["data_split"], r["position"]) for r in rows]
                for sample, rows in detail["records"].items()} == {
            "top": [("test", 0), ("train", 1)], "quantile:0": [("valid", 0)], "random": [("test", 0)]}
        (simulation,) = detail["simulations"]
        linked, imported = simulation["records"]
        assert (linked["record_id"], linked["sample"], linked["data_split"], linked["real"]) == (
            ids["top0"], "top", "test", ROWS[0][3])
        assert (imported["sample"], imported["tokens"], imported["real"]) == ("random", TOKENS, [0.0, 0.5, 0.0, 0.0, 0.0])
    if db.engine.dialect.name == "sqlite":  # since migration 0008 the slot is unique on PostgreSQL only
        db.dispose()
        return
    with pytest.raises(sa.exc.IntegrityError), db.session() as s, s.begin():  # (feature, sample, position) is unique
        first = s.get(ActivationRecordRow, ids["top0"])
        assert first is not None
        s.add(ActivationRecordRow(feature_id=first.feature_id, window_id=first.window_id, sample="top",
                                  data_split="test", position=0, activations=first.activations))
    db.dispose()


def test_the_rename_goes_back(db_url):
    _previous_revision(db_url)
    engine = make_engine(db_url)
    upgrade(engine)
    downgrade(engine, "0005_leases")
    with engine.connect() as conn:
        records = conn.execute(sa.text("SELECT split, position FROM activation_records ORDER BY id")).all()
        simulated = conn.execute(sa.text("SELECT split FROM simulated_records ORDER BY position")).all()
    engine.dispose()
    assert [tuple(r) for r in records] == [(sample, position) for sample, _, position, _ in ROWS]
    assert [r[0] for r in simulated] == ["top", "random"]
