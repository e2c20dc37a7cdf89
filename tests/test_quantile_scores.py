"""Per-quantile simulation scores: each quantile bin of the test split, pooled with its random records, scored by
ev_correlation and stored as subset `quantile:<i>`, beside top_and_random and random_only, which stay as they
were; reachable from `query`, the API's feature payload and the shuffled baseline."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from activations.records import ActivationRecord, FeatureId
from autointerp.api import create_app
from autointerp.cli import main
from scorer import ScoredRecord, ScoreValue, score_calibrated, score_ev_correlation, score_records, simulation_config
from storage.core import repository as repo
from storage.core.schema import Score, Simulation
from storage.records import record_store
from tests.pipeline_data import fill_layer, uncached_spec
from tests.stored import store_features
from tests.test_pipeline import digit_simulating_answer

LAYER = ["--model", "tiny-model", "--layer", "6"]


def _record(rng: random.Random, sample: str, n: int = 8) -> ScoredRecord:
    real = [rng.random() * 10 for _ in range(n)]
    return ScoredRecord(sample, real, [v + rng.gauss(0, 3) for v in real])


def _by_key(scores: list[ScoreValue]) -> dict[tuple[str, str], ScoreValue]:
    return {(s.method, s.subset): s for s in scores}


def test_quantile_subsets_pool_each_bin_with_the_random_records_and_leave_the_others_as_they_were():
    rng = random.Random(0)
    plain = [_record(rng, "top") for _ in range(3)] + [_record(rng, "random") for _ in range(3)]
    bins = {b: [_record(rng, f"quantile:{b}") for _ in range(2)] for b in (0, 1, 10)}
    mixed = plain[:2] + bins[10] + plain[2:4] + bins[0] + plain[4:] + bins[1]  # top/random order unchanged

    before, after = _by_key(score_records(plain)), _by_key(score_records(mixed))
    assert {k: v for k, v in after.items() if not k[1].startswith("quantile:")} == before
    quantile_keys = [k for k in after if k[1].startswith("quantile:")]
    assert quantile_keys == [("ev_correlation", "quantile:0"), ("ev_correlation", "quantile:1"),
                             ("ev_correlation", "quantile:10")]  # numeric bin order; only ev_correlation
    randoms = plain[3:]
    for b, records in bins.items():
        pooled = records + randoms
        got = after[("ev_correlation", f"quantile:{b}")]
        assert got.value == pytest.approx(score_ev_correlation([r.real for r in pooled],
                                                               [r.predicted for r in pooled]).value, abs=1e-12)
        assert got.ci_low is not None and got.ci_low <= got.value <= got.ci_high
    calibrated = score_calibrated(mixed, details={})
    assert all(not s.subset.startswith("quantile:") for s in calibrated)  # magnitudes: top/random subsets only


def _add_quantile_records(db, n_features: int, n_bins: int = 3) -> None:
    rng = random.Random(1)
    with db.session() as s, s.begin():
        for index in range(n_features):
            feature = store_features(s, [FeatureId("tiny-model", 6, "mlp_neuron", index)])[0]
            records = []
            for b in range(n_bins):
                for data_split in ("train", "valid", "test", "test"):
                    tokens = [" " + rng.choice(["cat", "3", "sat", "42", "on"]) for _ in range(10)]
                    acts = [(b + 1) * 0.6 * rng.random() if t.strip().isdigit() else 0.0 for t in tokens]
                    records.append(ActivationRecord(tokens, acts, sample=f"quantile:{b}", data_split=data_split))
            record_store.add_records(s, feature, records)


def _cli(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_explain_stores_per_quantile_scores_that_query_and_the_api_show(fake_openai, db_url, db, monkeypatch):
    fill_layer(db, 3)
    _add_quantile_records(db, 3)
    fake_openai.answer = digit_simulating_answer
    _cli("explain", *LAYER, "--explainer", "openai:fake", "--simulator", uncached_spec("json:openai:fake"),
         "--db", db_url)

    rows = json.loads(_cli("query", *LAYER, "--method", "ev_correlation", "--subset", "quantile:2",
                           "--format", "json", "--no-records", "--db", db_url).output)
    assert len(rows) == 3 and all(isinstance(r["score"], float) for r in rows)

    bad = _cli("query", *LAYER, "--method", "rsquared", "--subset", "quantile:2", "--db", db_url, ok=False)
    assert "stored on subsets top_and_random, random_only, not 'quantile:2'" in bad.output
    wrong = _cli("query", *LAYER, "--subset", "quantile:x", "--db", db_url, ok=False)
    assert "top_and_random, random_only, quantile:<i>, not 'quantile:x'" in wrong.output
    compared = _cli("compare", "--layer", "6", "--methods", "ev_correlation:quantile:2,ev_correlation", "--db", db_url)
    assert "quantile:2" in compared.output
    bad_compare = _cli("compare", "--layer", "6", "--explainer", "openai:a", "--explainer", "openai:b", "--method", "rsquared",
                       "--subset", "quantile:2", "--db", db_url, ok=False)
    assert "not 'quantile:2'" in bad_compare.output

    monkeypatch.delenv("AUTOINTERP_API_TOKEN", raising=False)
    with TestClient(create_app(db.url)) as client:
        listed = client.get("/api/features", params={"model": "tiny-model", "layer": 6, "subset": "quantile:2"})
        assert listed.status_code == 200, listed.text
        top = listed.json()["items"][0]
        assert top["subset"] == "quantile:2" and top["score"] == max(r["score"] for r in rows)
        feature = client.get(f"/api/features/{top['feature_id']}").json()
    own = {sc["subset"] for e in feature["explanations"] for sc in e["scores"] if sc["method"] == "ev_correlation"}
    shuffled = {b["subset"] for b in feature["shuffled_baselines"] if b["method"] == "ev_correlation"}
    quantiles = {"quantile:0", "quantile:1", "quantile:2"}
    own_simulation = next(sim for sim in feature["simulations"] if sim["role"] == "own")
    simulated = {(r["sample"], r["data_split"]) for r in own_simulation["records"]}  # one simulation holds them all
    assert simulated == {("top", "test"), ("random", "test"), *((q, "test") for q in quantiles)}
    assert quantiles <= own and quantiles <= shuffled  # the shuffled baseline per bin too


def test_rescore_simulates_again_what_was_simulated_without_the_quantile_bins(fake_openai, db_url, db):
    """A simulation stored before quantile bins were simulated (its configuration names no samples) does not count
    as done: rescore simulates the explanation again, under the current configuration, and adds its per-quantile
    scores; a second rescore then has nothing to do."""
    fill_layer(db, 2)
    _add_quantile_records(db, 2)
    fake_openai.answer = digit_simulating_answer
    simulator = uncached_spec("json:openai:fake")
    _cli("explain", *LAYER, "--explainer", "openai:fake", "--simulator", simulator, "--no-shuffled-baseline", "--db", db_url)
    before_quantiles = simulation_config(simulator)
    del before_quantiles["samples"]
    with db.session() as s, s.begin():  # the database as an earlier version left it
        for sim in s.scalars(select(Simulation).where(Simulation.role == "own")):
            sim.config_hash = repo.simulation_config_hash(before_quantiles, "own", sim.feature_id)
        s.execute(delete(Score).where(Score.subset.like("quantile:%")))

    out = _cli("rescore", *LAYER, "--simulator", simulator, "--no-shuffled-baseline", "--db", db_url).output
    assert "2 done" in out, out
    with db.session() as s:
        per_quantile = s.scalars(select(Score.subset).where(Score.subset.like("quantile:%"), Score.role == "own")).all()
    assert sorted(per_quantile) == sorted(f"quantile:{b}" for b in range(3) for _ in range(2))
    assert "2 skipped" in _cli("rescore", *LAYER, "--simulator", simulator, "--no-shuffled-baseline", "--db", db_url).output
