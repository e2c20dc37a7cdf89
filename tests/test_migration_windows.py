"""Migration 0004 converts a database written by the previous schema in place (SQLite and PostgreSQL):
windows stored once, activations binary, and every record, simulation and score reads back the same."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa

from storage.core import repository as repo
from storage.core.db import Database, make_engine, upgrade
from storage.core.schema import ActivationRecordRow, Score, Window
from storage.reads.feature_detail import feature_detail
from storage.records import record_store

WINDOW = ["The", " cat", " sat", " on", " 3", " mats"]
COLLECTED: list[float] = np.asarray([0.0, 1.3, 0.2, 0.0, 4.7, 0.1], dtype=np.float32).tolist()  # float32 values, as a collection stores them
IMPORTED = [0.0, 0.1, 0.25, 0.3, 0.7, 0.05]  # JSON decimals: float32 cannot hold them exactly
NOW = datetime.now(UTC)
DISTRIBUTION = [[0.9, 0.1], [0.5, 0.5], [0.3, 0.7], [1.0, 0.0], [0.2, 0.8], [0.6, 0.4]]


def _old_layout(url: str) -> dict[str, int]:
    """A database at revision 0003 with rows written the way that schema stored them (JSON lists)."""
    engine = make_engine(url)
    upgrade(engine, "0003_run_heartbeat")
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        model = conn.execute(sa.insert(t["subject_models"]).values(name="m", meta={})).inserted_primary_key[0]
        features = [conn.execute(sa.insert(t["features"]).values(
            model_id=model, layer=1, kind="mlp_neuron", sae_key="", index=i, dead=False, extra={},
            max_activation=4.7)).inserted_primary_key[0] for i in range(2)]
        records = []
        for feature in features:  # both features picked the same window: stored once after the migration
            for split, position, acts in (("top", 0, COLLECTED), ("random", 0, IMPORTED)):
                records.append(conn.execute(sa.insert(t["activation_records"]).values(
                    feature_id=feature, split=split, data_split="test", position=position, tokens=WINDOW,
                    activations=acts, max_activation=max(acts), corpus="wiki", document="d1", offset=64,
                )).inserted_primary_key[0])
        explanation = conn.execute(sa.insert(t["explanations"]).values(
            feature_id=features[0], status="ok", text="digits", explainer="openai:x", params={}, config_hash="h",
            polarity="positive", candidate=0, selected=True, created_at=NOW)).inserted_primary_key[0]
        simulation = conn.execute(sa.insert(t["simulations"]).values(
            explanation_id=explanation, feature_id=features[0], simulator="logprob:x", config_hash="s", role="own",
            status="ok", params={}, created_at=NOW)).inserted_primary_key[0]
        conn.execute(sa.insert(t["simulated_records"]), [
            {"simulation_id": simulation, "position": 0, "record_id": records[0], "split": "top",
             "tokens": None, "true_activations": None, "expected_activations": IMPORTED, "distribution": DISTRIBUTION},
            {"simulation_id": simulation, "position": 1, "record_id": None, "split": "random", "tokens": WINDOW,
             "true_activations": IMPORTED, "expected_activations": COLLECTED, "distribution": None},
        ])
        conn.execute(sa.insert(t["scores"]).values(
            explanation_id=explanation, simulation_id=simulation, feature_id=features[0], model_id=model, layer=1,
            method="ev_correlation", subset="top_and_random", role="own", simulator="logprob:x", scorer_hash="",
            value=0.42, ci_low=0.1, ci_high=0.6, n_records=2, details={"n_tokens": 12}, created_at=NOW))
    engine.dispose()
    return {"feature": features[0], "other": features[1], "record": records[0]}


def test_records_simulations_and_scores_read_back_the_same_after_the_migration(db_url):
    ids = _old_layout(db_url)
    db = Database(db_url)  # opening migrates to head
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Window)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(ActivationRecordRow)) == 4
        for feature_id in (ids["feature"], ids["other"]):
            records = record_store.load_records(s, repo.get_feature(s, feature_id))
            assert [(r.sample, list(r.tokens), list(r.activations)) for r in records] == [
                ("random", WINDOW, IMPORTED), ("top", WINDOW, COLLECTED)]
            assert {(r.provenance.corpus, r.provenance.document, r.provenance.offset) for r in records} == {
                ("wiki", "d1", 64)}
        detail = feature_detail(s, ids["feature"])
        assert detail is not None
        (simulation,) = detail["simulations"]
        linked, imported = simulation["records"]
        assert linked["record_id"] == ids["record"] and linked["real"] == COLLECTED and linked["tokens"] == WINDOW
        assert linked["expected"] == IMPORTED
        assert imported["real"] == IMPORTED and imported["expected"] == COLLECTED and imported["tokens"] == WINDOW
        score = s.scalars(sa.select(Score)).one()
        assert (score.value, score.ci_low, score.ci_high, score.details) == (0.42, 0.1, 0.6, {"n_tokens": 12})
    db.dispose()


def test_the_migration_goes_back_to_json_lists(db_url):
    _old_layout(db_url)
    engine = make_engine(db_url)
    upgrade(engine)
    from tests.migrating import downgrade

    downgrade(engine, "0003_run_heartbeat")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT tokens, activations, corpus FROM activation_records ORDER BY id")).all()
    engine.dispose()
    decoded = [[r[0] if isinstance(r[0], list) else __import__("json").loads(r[0]),
                r[1] if isinstance(r[1], list) else __import__("json").loads(r[1]), r[2]] for r in rows]
    assert decoded == [[WINDOW, COLLECTED, "wiki"], [WINDOW, IMPORTED, "wiki"]] * 2
