"""The Parquet export carries flat columns for analysis: the current explanation, its best measured score per
method (default subset; shuffled baselines, other subsets and imported scores left out) and the weight evidence.
Read back with pyarrow, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from activations.records import FeatureId
from autointerp.cli import main
from scorer import simulation_config, simulation_scorer_config
from storage.core import repository as repo
from storage.reads.queries import SCORE_METHODS
from storage.results.outcome_store import SimulationToStore
from tests.pipeline_data import fill_layer
from tests.stored import store_features, store_score

LOGITS = {"promoted": [[" river", 3.5], [" bank", 2.25]], "suppressed": [[" the", -1.5]]}
NEIGHBOURS = [{"index": 1, "similarity": 0.75}]


def fill(db) -> None:
    """Feature 0: an older and a current explanation, the current one scored by two simulators, on another subset,
    by its shuffled baseline, by a judge, and by an imported file. Feature 1: unexplained, no evidence."""
    fill_layer(db, 2)
    with db.session() as s, s.begin():
        feature = store_features(s, [FeatureId("tiny-model", 6, "mlp_neuron", 0)])[0]
        feature.extra = {"logits": LOGITS, "neighbours": NEIGHBOURS}
        old, _ = repo.add_explanation(s, feature, explainer="openai:x", config={"v": 1}, text="rivers")
        store_score(s, old, feature, method="ev_correlation", subset="top_and_random", value=0.8,
                       simulator="json:openai:x", scorer_config=simulation_scorer_config())
        current, _ = repo.add_explanation(s, feature, explainer="openai:y", config={"v": 2}, text="rivers and banks")
        for simulator, value in (("json:openai:x", 0.5), ("embedding", 0.6)):
            store_score(s, current, feature, method="ev_correlation", subset="top_and_random", value=value,
                        simulation=SimulationToStore(simulation_config(simulator), [], []), simulator=simulator,
                        scorer_config=simulation_scorer_config())
        store_score(s, current, feature, method="ev_correlation", subset="top_and_random", value=0.99,
                       simulator="import:openai", scorer_config={"s": 3})
        store_score(s, current, feature, method="ev_correlation", subset="random_only", value=0.9,
                       simulator="embedding", scorer_config=simulation_scorer_config())
        store_score(s, current, feature, method="ev_correlation", subset="top_and_random", value=0.95,
                       simulator="embedding", role="shuffled", scorer_config={"s": 4})
        store_score(s, current, feature, method="detection_auroc", subset="random", value=0.7,
                       simulator="detection:openai:x")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_flat_columns(db_url, db, tmp_path, fmt):
    fill(db)
    out = tmp_path / f"layer.{fmt}"
    result = CliRunner().invoke(main, ["export", "--db", db_url, "--layer", "6", "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        table = pq.read_table(out)
        assert table.schema.field("score_ev_correlation").type == pa.float64()
        assert table.schema.field("explanation").type == pa.string()
        rows = table.to_pylist()
    first, second = rows
    assert (first["explanation"], first["explainer"]) == ("rivers and banks", "openai:y")
    assert first["score_ev_correlation"] == 0.6  # not the imported 0.99, the shuffled 0.95 or random_only's 0.9
    assert first["score_detection_auroc"] == 0.7
    assert all(first[f"score_{m}"] is None for m in SCORE_METHODS if m not in ("ev_correlation", "detection_auroc"))
    imported = [sc for e in first["explanations"] for sc in e["scores"] if sc["imported"]]
    assert [sc["value"] for sc in imported] == [0.99]  # kept, marked, in the nested scores
    assert first["neighbours"] == NEIGHBOURS
    if fmt == "jsonl":
        assert first["logits"] == LOGITS
    else:
        assert first["logits"] == {side: [{"token": t, "logit": v} for t, v in pairs] for side, pairs in LOGITS.items()}
    assert second["explanation"] is None and second["explanation_id"] is None and second["logits"] is None
    assert all(second[f"score_{m}"] is None for m in SCORE_METHODS)
