"""Versioned simulation scoring: scores stored before the current scoring version (as the code before it stored
them: no version in their configuration) never count as done and never rank beside current ones. A rescore with
the same simulator scores them again, from the stored simulation (no simulator call), through the real CLI and
the fake OpenAI-compatible server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from autointerp.api import create_app
from autointerp.cli import main
from scorer import SCORING_VERSION, simulation_config, simulation_scorer_config
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Score, Simulation
from storage.reads.score_stats import score_histograms
from tests.pipeline_data import fill_layer
from tests.test_pipeline import digit_simulating_answer

LAYER = ["--model", "tiny-model", "--layer", "6", "--simulator", "json:openai:fake"]
OLD_VALUE = 0.999  # what the old scores say: were they ranked, they would head every feature


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def own_ev(db: Database, scorer_hash: str) -> dict[int, float]:
    with db.session() as s:
        return dict(s.execute(select(Score.explanation_id, Score.value).where(
            Score.method == "ev_correlation", Score.subset == "top_and_random", Score.role == "own",
            Score.scorer_hash == scorer_hash)).all())


def test_scores_of_an_older_version_are_scored_again_and_never_ranked_beside_new_ones(fake_openai, db_url, db):
    fill_layer(db, 3)
    fake_openai.answer = digit_simulating_answer
    cli("explain", *LAYER[:4], "--explainer", "openai:fake", *LAYER[4:], "--db", db_url)
    current = repo.config_hash(simulation_scorer_config())
    measured = own_ev(db, current)
    assert len(measured) == 3 and all(v < OLD_VALUE for v in measured.values())
    with db.session() as s, s.begin():  # the database as the code before scoring versions left it
        s.execute(update(Score).where(Score.scorer_hash == current)
                  .values(scorer_hash=repo.config_hash({}), value=OLD_VALUE))
        n_simulations = len(s.scalars(select(Simulation.id)).all())

    rows = json.loads(cli("query", "--layer", "6", "--format", "json", "--no-records", "--db", db_url))
    assert [r["score"] for r in rows] == [None, None, None]  # old numbers are not ranked as current ones
    with db.session() as s:
        assert score_histograms(s, "tiny-model", 6)["histograms"] == []

    requests = fake_openai.requests
    out = cli("rescore", *LAYER, "--no-shuffled-baseline", "--db", db_url)
    assert "3 done, 0 skipped" in out
    assert own_ev(db, current) == measured  # scored again from the stored simulation, not skipped
    assert fake_openai.requests == requests  # the same simulation: no simulator call
    with db.session() as s:
        assert len(s.scalars(select(Simulation.id)).all()) == n_simulations

    rows = json.loads(cli("query", "--layer", "6", "--format", "json", "--no-records", "--db", db_url))
    assert sorted(r["score"] for r in rows) == sorted(measured.values())  # never the old 0.999

    # The baselines of the old version do not count either: a rescore with them makes new ones.
    cli("rescore", *LAYER, "--db", db_url)
    with db.session() as s:
        shuffled = s.scalars(select(Score.explanation_id).distinct().where(
            Score.role == "shuffled", Score.scorer_hash == current)).all()
        assert sorted(shuffled) == sorted(measured)
        histogram = next(h for h in score_histograms(s, "tiny-model", 6)["histograms"]
                         if (h["method"], h["subset"]) == ("ev_correlation", "top_and_random"))
        assert histogram["own"]["n"] == 3 and histogram["shuffled"]["n"] == 3


def test_every_score_says_its_scoring_version(fake_openai, db_url, db):
    """The feature page's scores tell old numbers from current ones (simulation scores only)."""
    fill_layer(db, 2)
    fake_openai.answer = digit_simulating_answer
    cli("explain", *LAYER[:4], "--explainer", "openai:fake", *LAYER[4:], "--db", db_url)
    with db.session() as s, s.begin():
        s.execute(update(Score).where(Score.role == "shuffled").values(scorer_hash=repo.config_hash({})))
    with TestClient(create_app(db_url)) as c:
        page = c.get("/api/features/by-key", params={"model": "tiny-model", "layer": 6, "index": 0}).json()
    own = {sc["scoring_version"] for e in page["explanations"] for sc in e["scores"]}
    assert own == {SCORING_VERSION} and {b["scoring_version"] for b in page["shuffled_baselines"]} == {"1"}


def test_the_simulation_configuration_hashes_as_stored_simulations_were_hashed():
    """Its keys (the data split still under "split") are part of every stored simulation's hash: a renamed key
    would make every stored simulation other work. The literal is the hash stored simulations carry."""
    config = simulation_config("embedding")
    assert config == {"simulator": "embedding", "split": "test", "value_reading": 2,
                      "samples": ["top", "random", "quantile"]}
    assert repo.config_hash(config) == "4dca1004f20c750c5d041e062036703e"
