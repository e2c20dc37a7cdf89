"""Scores imported from files (the file's own number: no simulator here, no shuffled baseline) are labelled as
imported everywhere and head or rank a feature only when asked for (`--include-imported`, `include_imported=true`).
Imported through the real `autointerp import`, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from activations.records import FeatureId
from autointerp.api import create_app
from autointerp.cli import main
from scorer import simulation_scorer_config
from storage.core import repository as repo
from storage.core.schema import Explanation
from storage.reads.comparisons import best_by_index
from storage.reads.queries import FeatureQuery, best_scores
from tests.stored import store_score
from tests.test_import_query import EXPLANATIONS, NEURON_RECORD

MEASURED = 0.462  # what this tool measured for neuron 17
IMPORTED = 0.8125  # the imported file's own ev_correlation for "digits"


def cli(*args: object, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def layer3(tmp_path, db_url, db):
    """Neuron 17: imported explanations scored 0.8125 and 0.4375 by the file, and a measured explanation scored
    0.462 here. Neuron 18: only an imported score (0.7)."""
    (tmp_path / "neuron.json").write_text(json.dumps(NEURON_RECORD))
    (tmp_path / "explanations.jsonl").write_text(json.dumps(EXPLANATIONS) + "\n")
    only_imported = json.loads(json.dumps(EXPLANATIONS))
    only_imported["neuron_id"]["neuron_index"] = 18
    only_imported["scored_explanations"] = [{"explanation": "commas", "scored_simulation": {"ev_correlation_score": 0.7}}]
    (tmp_path / "more.jsonl").write_text(json.dumps(only_imported) + "\n")
    cli("import", tmp_path, "--db", db_url, "--model", "gpt2-xl")
    with db.session() as s, s.begin():
        feature = repo.find_feature(s, FeatureId("gpt2-xl", 3, "mlp_neuron", 17))
        assert feature is not None
        explanation, _ = repo.add_explanation(s, feature, explainer="openai:gpt-4o-mini", config={"k": 1},
                                              text="the digit 1")
        store_score(s, explanation, feature, method="ev_correlation", subset="top_and_random", value=MEASURED,
                    simulator="json:openai:gpt-4o-mini", scorer_config=simulation_scorer_config())
    return db


def query(db_url: str, *args: object) -> list[dict]:
    return json.loads(cli("query", "--db", db_url, "--layer", 3, "--format", "json", "--no-records", *args).output)


def test_query_heads_with_the_measured_score_unless_asked(layer3, db_url):
    rows = query(db_url)
    assert [(r["index"], r["score"], r["score_imported"]) for r in rows] == [(17, MEASURED, False), (18, None, None)]
    assert rows[0]["explanation"] == "the digit 1" and rows[0]["explainer"] == "openai:gpt-4o-mini"

    rows = query(db_url, "--include-imported")
    assert [(r["index"], r["score"], r["score_imported"]) for r in rows] == [(17, IMPORTED, True), (18, 0.7, True)]
    assert rows[0]["explanation"] == "digits" and rows[0]["explainer"] == "import:openai"

    # --min-score filters on measured scores only: an imported 0.8125 does not let neuron 17 through.
    assert query(db_url, "--min-score", 0.5) == []
    assert [r["index"] for r in query(db_url, "--min-score", 0.5, "--include-imported")] == [17, 18]


def test_csv_and_table_label_imported_scores(layer3, db_url):
    out = cli("query", "--db", db_url, "--layer", 3, "--format", "csv", "--include-imported").output
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["index"], r["score"], r["score_imported"]) for r in rows] == [("17", "0.8125", "True"),
                                                                             ("18", "0.7", "True")]
    assert "score_imported" not in cli("query", "--db", db_url, "--layer", 3, "--format", "csv").output
    assert "score_imported" in cli("query", "--db", db_url, "--layer", 3, "--include-imported").output


def test_api_list_and_feature_page(layer3, db_url, monkeypatch):
    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    with TestClient(create_app(layer3.url)) as client:
        items = client.get("/api/features", params={"layer": 3}).json()["items"]
        assert [(i["index"], i["score"], i["score_imported"]) for i in items] == [(17, MEASURED, False),
                                                                                  (18, None, None)]
        items = client.get("/api/features", params={"layer": 3, "include_imported": "true"}).json()["items"]
        assert [(i["index"], i["score"], i["score_imported"]) for i in items] == [(17, IMPORTED, True),
                                                                                  (18, 0.7, True)]
        page = client.get(f"/api/features/{items[0]['feature_id']}").json()
    labels = {(e["text"], s["value"], s["imported"]) for e in page["explanations"] for s in e["scores"]
              if s["method"] == "ev_correlation"}
    assert labels == {("digits", IMPORTED, True), ("numbers in lists", 0.4375, True), ("the digit 1", MEASURED, False)}


def test_best_scores_leave_imported_out(layer3):
    """The one best-score query behind query, compare and semantic search."""
    with layer3.session() as s:
        ids = dict(s.execute(select(Explanation.text, Explanation.id)).all())
        f17, f18 = (repo.find_feature(s, FeatureId("gpt2-xl", 3, "mlp_neuron", i)).id for i in (17, 18))
        assert best_scores(s, FeatureQuery(layer=3)) == [(f17, MEASURED, ids["the digit 1"], False)]
        assert best_scores(s, FeatureQuery(layer=3, include_imported=True)) == [
            (f17, IMPORTED, ids["digits"], True), (f18, 0.7, ids["commas"], True)]
        # compare: by feature index, one explainer
        assert best_by_index(s, FeatureQuery(layer=3, explainer="import:openai")) == {}
        assert best_by_index(s, FeatureQuery(layer=3, explainer="import:openai", include_imported=True)) == {
            17: (f17, IMPORTED, ids["digits"], True), 18: (f18, 0.7, ids["commas"], True)}
        # Semantic search shows each matched explanation with its score: measured, or imported only when asked.
        assert best_scores(s, FeatureQuery(), explanation_ids=[ids["digits"]]) == []
        assert best_scores(s, FeatureQuery(include_imported=True), explanation_ids=[ids["digits"]]) == [
            (f17, IMPORTED, ids["digits"], True)]
        assert best_scores(s, FeatureQuery(include_imported=True), explanation_ids=[ids["the digit 1"]]) == [
            (f17, MEASURED, ids["the digit 1"], False)]
