"""Steering results in the database (SQLite and PostgreSQL): a result and a failure round trip, "already steered?"
answers per configuration, the feature page reads them, migration 0009 adds the table to a database holding data
and goes back; and `autointerp steer` names what is wrong before loading a model."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from activations.records import FeatureId
from activations.steering_results import SteeringFailure, SteeringResult
from autointerp.cli import main
from storage.core.db import Database, make_engine, upgrade
from storage.reads.feature_detail import feature_detail
from storage.results import already_done
from storage.results.steering_store import SteeringCost, save_steering, steering_result, steering_rows
from tests.migrating import downgrade
from tests.stored import store_features

RESULT = SteeringResult(strength=575.7, kl=0.51, target_kl=0.5, prompts=("The", "Once upon a time,"),
                        steered=(" Paris is", " in Paris"), unsteered=((" cat", " dog"), (" there", " a king")))
CONFIG = {"model": "m", "hook": "blocks.2.mlp.hook_post", "target_kl": 0.5, "tokens": 8}


def test_results_and_failures_round_trip_and_answer_already_done(db):
    with db.session() as s, s.begin():
        ok, weak, other = store_features(s, [FeatureId("m", 2, "mlp_neuron", i) for i in range(3)])
        save_steering(s, ok, CONFIG, RESULT, run_id=None, cost=SteeringCost(30, 1.5))
        save_steering(s, weak, CONFIG, SteeringFailure("KL 0.1 below the target", 88.0, 0.1), run_id=None)
        ids = (ok.id, weak.id, other.id)
    with db.session() as s:
        assert steering_result(s, ids[0], CONFIG) == RESULT
        assert steering_result(s, ids[1], CONFIG) == SteeringFailure("KL 0.1 below the target", 88.0, 0.1)
        assert steering_result(s, ids[2], CONFIG) is None
        assert steering_result(s, ids[0], {**CONFIG, "target_kl": 1.0}) is None
        assert already_done.steered(s, ids, steering_config=CONFIG) == {ids[0], ids[1]}
        assert already_done.steered(s, ids, steering_config={**CONFIG, "tokens": 16}) == set()
        [row] = steering_rows(s, ids[0])
        assert (row["strength"], row["kl"], row["forward_passes"]) == (575.7, 0.51, 30)
        assert row["prompts"][1] == {"prompt": "Once upon a time,", "steered": " in Paris",
                                     "unsteered": [" there", " a king"]}
        detail = feature_detail(s, ids[0])
        assert detail is not None and detail["steering"][0]["prompts"] == row["prompts"]


def test_migration_0009_adds_the_table_and_goes_back(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0008_store_size")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO subject_models (name, meta) VALUES ('m', '{}')"))
    upgrade(engine)
    assert "steering_results" in sa.inspect(engine).get_table_names()
    db = Database(db_url)
    with db.session() as s, s.begin():
        [feature] = store_features(s, [FeatureId("m", 2, "mlp_neuron", 0)])
        save_steering(s, feature, CONFIG, RESULT, run_id=None)
    db.dispose()
    downgrade(engine, "0008_store_size")
    tables = sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        models = conn.execute(sa.text("SELECT name FROM subject_models")).scalars().all()
    engine.dispose()
    assert "steering_results" not in tables and models == ["m"]


def test_steer_names_what_is_missing_before_loading_a_model(db, db_url):
    run = lambda *args: CliRunner().invoke(main, ["steer", *args, "--db", db_url])  # noqa: E731
    result = run("--model", "gemma-3-270m", "--layer", "6")
    assert result.exit_code == 1 and "run `autointerp collect --model gemma-3-270m --layers 6` first" in result.output
    with db.session() as s, s.begin():
        store_features(s, [FeatureId("gemma-3-270m", 6, "mlp_neuron", i) for i in range(3)])
    result = run("--model", "gemma-3-270m", "--layer", "6", "--features", "7")
    assert result.exit_code == 1 and "index(es) not collected for layer 6 (e.g. [7])" in result.output
    result = run("--layer", "6", "--target-kl", "0")
    assert result.exit_code == 1 and "--target-kl must be > 0" in result.output
