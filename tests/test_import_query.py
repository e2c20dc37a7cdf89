"""Import real Neuronpedia fixtures and hand-written OpenAI files, then query them (SQLite and PostgreSQL)."""

import json

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from autointerp.cli import main
from scorer import simulation_scorer_config
from storage.core.schema import ActivationRecordRow, Explanation, Feature, Score
from tests.conftest import FIXTURES
from tests.stored import store_features, store_score

NEURONPEDIA = FIXTURES / "neuronpedia"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def counts(db):
    with db.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Feature, ActivationRecordRow, Explanation, Score))


NEURON_RECORD = {
    "dataclass_name": "NeuronRecord",
    "neuron_id": {"dataclass_name": "NeuronId", "layer_index": 3, "neuron_index": 17},
    "random_sample": [{"tokens": ["the", " cat"], "activations": [0.0, 0.1]}],
    "random_sample_by_quantile": [[{"tokens": ["a", " b"], "activations": [0.2, 0.0]}]],
    "quantile_boundaries": [0.0, 0.5],
    "mean": 0.05,
    "variance": 0.01,
    "skewness": 1.0,
    "kurtosis": 3.0,
    "most_positive_activation_records": [
        {"tokens": ["1", "2", "3"], "activations": [2.5, 1.0, 0.0]},
        {"tokens": [" x", "9"], "activations": [0.0, 2.0]},
    ],
}
EXPLANATIONS = {
    "dataclass_name": "NeuronSimulationResults",
    "neuron_id": {"dataclass_name": "NeuronId", "layer_index": 3, "neuron_index": 17},
    "scored_explanations": [
        {
            "explanation": "digits",
            "scored_simulation": {
                "scored_sequence_simulations": [
                    {
                        "simulation": {"tokens": ["1", "2", "3"], "expected_activations": [9.0, 8.0, 0.5]},
                        "true_activations": [2.5, 1.0, 0.0],
                        "ev_correlation_score": 0.96,
                    }
                ],
                "ev_correlation_score": 0.8125,
                "rsquared_score": 0.5,
                "absolute_dev_explained_score": 0.25,
            },
        },
        {"explanation": "numbers in lists", "scored_simulation": {"ev_correlation_score": 0.4375}},
    ],
}


def test_neuronpedia_import_lists_features_with_records(db_url, db):
    assert run("import", NEURONPEDIA, "--db", db_url).exit_code == 0
    first = counts(db)
    assert first[0] == 4 and first[1] > 100
    assert run("import", NEURONPEDIA, "--db", db_url).exit_code == 0
    assert counts(db) == first  # idempotent

    out = run("query", "--db", db_url, "--format", "json")
    rows = json.loads(out.output)
    assert [(r["model"], r["layer"], r["kind"], r["sae"], r["index"]) for r in rows] == [
        ("gpt2-small", 0, "sae_latent", "0-res-jb", i) for i in range(4)
    ]
    by_index = {r["index"]: r for r in rows}
    assert by_index[1]["dead"] is True and by_index[0]["dead"] is False
    assert by_index[3]["max_activation"] == pytest.approx(3.429)
    samples = {rec["sample"] for rec in by_index[2]["records"]}
    assert {"top", "random", "quantile:0"} <= samples
    top = [rec for rec in by_index[3]["records"] if rec["sample"] == "top"]
    assert len(top) == 30 and max(top[0]["activations"]) == pytest.approx(3.43, abs=0.01)
    assert all(r["score"] is None and r["explanation"] is None for r in rows)


def test_openai_round_trip_keeps_numbers(tmp_path, db_url, db):
    (tmp_path / "neuron.json").write_text(json.dumps(NEURON_RECORD))
    (tmp_path / "explanations.jsonl").write_text(json.dumps(EXPLANATIONS) + "\n")
    assert run("import", tmp_path, "--db", db_url, "--model", "gpt2-xl").exit_code == 0
    assert run("import", tmp_path, "--db", db_url, "--model", "gpt2-xl").exit_code == 0
    assert counts(db) == (1, 4, 2, 4)

    # The file's own scores head a feature only when asked for (tests/test_imported_scores.py has the rule).
    rows = json.loads(run("query", "--db", db_url, "--format", "json", "--layer", "3", "--include-imported").output)
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["layer"], row["kind"], row["index"]) == ("gpt2-xl", 3, "mlp_neuron", 17)
    assert row["score"] == 0.8125 and row["explanation"] == "digits" and row["score_imported"] is True
    top = [r for r in row["records"] if r["sample"] == "top"]
    assert [r["activations"] for r in top] == [[2.5, 1.0, 0.0], [0.0, 2.0]]

    rsq = json.loads(run("query", "--db", db_url, "--format", "json", "--method", "rsquared", "--no-records",
                         "--include-imported").output)
    assert rsq[0]["score"] == 0.5 and "records" not in rsq[0]

    out = tmp_path / "exported" / "records.jsonl"
    out.parent.mkdir()
    assert run("export", "--format", "openai", "--out", out, "--db", db_url).exit_code == 0
    exported = json.loads(out.read_text())
    for key in ("neuron_id", "most_positive_activation_records", "random_sample", "random_sample_by_quantile",
                "quantile_boundaries", "mean", "variance"):
        assert exported[key] == NEURON_RECORD[key], key
    # ...and the exported file imports again as the same feature, adding nothing.
    assert run("import", out, "--db", db_url, "--model", "gpt2-xl").exit_code == 0
    assert counts(db) == (1, 4, 2, 4)


def test_malformed_file_writes_nothing_and_names_field(tmp_path, db_url, db):
    bad = json.loads(json.dumps(NEURON_RECORD))
    bad["most_positive_activation_records"][1]["activations"] = [0.0, "high"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = CliRunner().invoke(main, ["import", str(tmp_path / "bad.json"), "--db", db_url])
    assert result.exit_code != 0
    assert "bad.json" in result.output and "most_positive_activation_records[1].activations[1]" in result.output
    assert counts(db) == (0, 0, 0, 0)

    bad2 = json.loads((NEURONPEDIA / "gpt2-small-res-jb-layer0-batch-1.json").read_text())
    bad2["features"][1]["activations"][5]["values"] = bad2["features"][1]["activations"][5]["values"][:-1]
    (tmp_path / "np.json").write_text(json.dumps(bad2))
    result = CliRunner().invoke(main, ["import", str(tmp_path / "np.json"), "--db", db_url])
    assert result.exit_code != 0 and "features[1].activations[5]" in result.output and "127 tokens but 126" in result.output
    assert counts(db) == (0, 0, 0, 0)  # feature 2 of the same file was valid, and still nothing was written


def test_query_ranking_filters_and_search(db_url, db):
    from activations.records import FeatureId
    from storage.core import repository as repo

    with db.session() as s, s.begin():
        for i, (text, score) in enumerate([("numbers and digits", 0.9), ("colour words", 0.7), ("the token after of", 0.2)]):
            f = store_features(s, [FeatureId("m", 6, "mlp_neuron", i)])[0]
            e, _ = repo.add_explanation(s, f, explainer="openai:x" if i else "local:y", config={"i": i}, text=text)
            store_score(s, e, f, method="ev_correlation", subset="top_and_random", value=score, scorer_config=simulation_scorer_config())
            e2, _ = repo.add_explanation(s, f, explainer="openai:x", config={"i": i, "v": 2}, text=text + " v2")
            store_score(s, e2, f, method="ev_correlation", subset="top_and_random", value=score - 0.1,
                           scorer_config=simulation_scorer_config())
        store_features(s, [FeatureId("m", 6, "mlp_neuron", 9)])[0]
        store_features(s, [FeatureId("m", 7, "mlp_neuron", 0)])[0]

    def q(*args):
        return json.loads(run("query", "--db", db_url, "--format", "json", "--no-records", *args).output)

    rows = q("--layer", "6")
    assert [(r["index"], r["score"]) for r in rows] == [(0, 0.9), (1, 0.7), (2, 0.2), (9, None)]
    assert rows[0]["explanation"] == "numbers and digits"
    assert [r["index"] for r in q("--layer", "6", "--min-score", "0.5")] == [0, 1]
    assert [r["index"] for r in q("--search", "digit")] == [0]  # stemmed
    assert [r["index"] for r in q("--search", "colour v2")] == [1]
    assert [(r["index"], r["score"]) for r in q("--explainer", "openai:x")] == [(0, pytest.approx(0.8)), (1, 0.7), (2, 0.2)]
    assert [r["index"] for r in q("--layer", "6", "--limit", "2", "--offset", "2")] == [2, 9]
    assert len(q()) == 5

    result = CliRunner().invoke(main, ["query", "--db", db_url, "--search", "x" * 500])
    assert result.exit_code != 0 and "limit is 200" in result.output
    csv_out = run("query", "--db", db_url, "--format", "csv", "--layer", "6").output.splitlines()
    assert csv_out[0].startswith("model,layer,kind,sae,index,score") and len(csv_out) == 5


def test_every_command_has_help_with_example():
    for name in main.list_commands(click.Context(main)):
        out = run(name, "--help").output
        assert "Example" in out, name
