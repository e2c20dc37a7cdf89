"""Signed features, both sides: a planted layer whose features rise on one rule and fall on another, collected as
`collect --signed` collects (bottom records beside the top ones, balanced splits), explained with `explain
--polarity both` by a rule-following explainer, simulator and judge on the fake OpenAI server (real HTTP): two
explanations per feature, each scored on its own side; `query`, the API and a rerun see both."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import func, select

from activations.sampling import SamplerConfig
from autointerp.api import create_app
from autointerp.cli import main
from scorer import simulation_config
from storage.core.db import Database
from storage.core.schema import Explanation, Feature, Run, Score, Simulation
from storage.reads.stored_simulations import stored_expected_values
from storage.records import record_store
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import uncached_spec
from tests.planted_rules import value_digit
from tests.planted_signed import EXPLANATION, LAYER, MODEL, collect_signed, signed_answer, store_signed


def cli(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_a_signed_collection_keeps_balanced_bottom_records():
    """Bottom records are the most negative windows, all below zero, split as top records are: valid and test hold
    as many bottom as random records. A feature that never goes below zero has none."""
    features = collect_signed()
    for fr in features[:2]:
        bottoms = fr.select(samples=["bottom"])
        assert len(bottoms) == 20 and all(min(r.activations) < 0 for r in bottoms)
        assert min(bottoms[0].activations) == fr.stats.min_activation  # strongest first
        for split in ("valid", "test"):
            assert len(fr.select(samples=["bottom"], data_splits=[split])) == \
                len(fr.select(samples=["random"], data_splits=[split])) == 4
    assert not features[2].select(samples=["bottom"])
    assert all(not fr.select(samples=["bottom"]) for fr in collect_signed(SamplerConfig()))  # unsigned: none


@pytest.fixture
def rule_server(monkeypatch):
    server = FakeOpenAI(answer=signed_answer, digit_for=value_digit).start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fake-key-123")
    yield server
    server.stop()


def _selected(db: Database) -> dict[tuple[int, str], Explanation]:
    with db.session() as s:
        rows = s.execute(select(Feature.index, Explanation).join(Feature, Feature.id == Explanation.feature_id)
                         .where(Explanation.selected.is_(True))).all()
        return {(index, e.polarity): e for index, e in rows}


def _score(db: Database, explanation_id: int, role: str = "own") -> float | None:
    with db.session() as s:
        return s.scalar(select(Score.value).where(
            Score.explanation_id == explanation_id, Score.role == role, Score.method == "ev_correlation",
            Score.subset == "top_and_random"))


def _negative_side_pearson(db: Database, simulator: str, index: int, explanation_id: int) -> float:
    """Pearson r of the negated raw activations of the simulated records against the stored simulation, read back
    from the store: what the negative explanation's stored score must be."""
    with db.session() as s:
        feature = s.scalars(select(Feature).where(Feature.index == index)).one()
        stored = stored_expected_values(s, explanation_id, feature.id, simulation_config(simulator, "negative"))
        records = {r.record_id: r for r in record_store.load_feature_records(s, feature).records}
    assert stored is not None
    pairs = [(records[record_id], expected) for record_id, expected in stored]
    assert Counter(r.sample for r, _ in pairs) == {"bottom": 4, "random": 4}  # the negative side's scored set
    assert {r.data_split for r, _ in pairs} == {"test"}
    real = -np.concatenate([r.activations for r, _ in pairs])
    return float(stats.pearsonr(real, np.concatenate([e for _, e in pairs]))[0])


def test_explain_both_sides_stores_two_scored_explanations(rule_server, db_url, db):
    store_signed(db)
    spec, simulator = uncached_spec(), f"json:{uncached_spec()}"
    explain = ["explain", "--model", MODEL, "--layer", str(LAYER), "--polarity", "both", "--explainer", spec,
               "--simulator", simulator, "--db", db_url]
    estimate = json.loads(cli(*explain, "--dry-run").output)
    assert estimate["features_pending"] == 6 and set(estimate["sides"]) == {"positive", "negative"}
    assert estimate["explainer"]["requests"] == 5 == sum(s["explainer"]["requests"] for s in estimate["sides"].values())
    assert rule_server.requests == 0

    out = cli(*explain).output
    assert "5 done" in out and "1 failed" in out
    selected = _selected(db)
    truth = {(0, "positive"): "digits", (0, "negative"): "months", (1, "positive"): "capitalised",
             (1, "negative"): "digits", (2, "positive"): "months"}
    # Each side's rule found and scored above its shuffled baseline (a negative side's scored set holds the positive
    # side too, negated: the other rule's tokens lower its correlation, as they would a real neuron's).
    for key, rule in truth.items():
        assert selected[key].text == EXPLANATION[rule], key
        own, shuffled = _score(db, selected[key].id), _score(db, selected[key].id, "shuffled")
        assert own is not None and own > 0.3 and (shuffled is None or own > shuffled + 0.2), (key, own, shuffled)
    with db.session() as s:  # the feature that never goes below zero: failed on its input, no LLM call
        reasons = s.scalars(select(Explanation.failure_reason).join(Feature, Feature.id == Explanation.feature_id)
                            .where(Feature.index == 2, Explanation.polarity == "negative")).all()
    assert len(reasons) == 1 and "goes below zero" in (reasons[0] or "")
    for index in (0, 1):
        explanation_id = selected[(index, "negative")].id
        assert _score(db, explanation_id) == pytest.approx(
            _negative_side_pearson(db, simulator, index, explanation_id), abs=1e-9)
    with db.session() as s:  # feature 0's negative baseline borrows the other negative explanation
        borrowed = s.scalars(select(Simulation.explanation_id).where(
            Simulation.role == "shuffled", Simulation.feature_id == selected[(0, "negative")].feature_id,
            Simulation.simulator == simulator)).all()
    assert selected[(1, "negative")].id in borrowed and selected[(1, "positive")].id in borrowed

    requests = rule_server.requests
    out = cli(*explain).output  # a rerun asks nothing, on either side
    assert "6 skipped" in out and rule_server.requests == requests
    assert json.loads(cli(*explain, "--dry-run").output)["features_pending"] == 0


def test_query_and_api_show_both_sides(rule_server, db_url, db):
    store_signed(db)
    cli("explain", "--model", MODEL, "--layer", str(LAYER), "--polarity", "both", "--explainer", uncached_spec(),
        "--simulator", f"json:{uncached_spec()}", "--features", "0-1", "--db", db_url)
    rows = {r["index"]: r for r in json.loads(cli("query", "--layer", "0", "--format", "json", "--db", db_url).output)}
    assert rows[0]["larger_side"] == "negative" and rows[1]["larger_side"] == "positive"
    assert rows[2]["larger_side"] == "positive" and rows[2]["sides"] == {}
    assert rows[0]["sides"]["negative"]["explanation"] == EXPLANATION["months"]
    assert rows[0]["sides"]["positive"]["explanation"] == EXPLANATION["digits"]
    assert all(rows[i]["sides"][p]["score"] > 0.3 for i in (0, 1) for p in ("positive", "negative"))
    negative = json.loads(cli("query", "--layer", "0", "--polarity", "negative", "--format", "json",
                              "--db", db_url).output)
    assert [(r["index"], r["polarity"]) for r in negative[:2]] == [(0, "negative"), (1, "negative")] or \
        {(r["index"], r["polarity"]) for r in negative[:2]} == {(0, "negative"), (1, "negative")}
    assert negative[2]["score"] is None  # feature 2 has no negative side scored
    table = cli("query", "--layer", "0", "--db", db_url).output
    assert "side" in table and "larger_side" in table and table.count("negative") >= 3

    with db.session() as s:
        feature_id = s.scalar(select(Feature.id).where(Feature.index == 0))
    with TestClient(create_app(db.url)) as client:
        detail = client.get(f"/api/features/{feature_id}").json()
        listed = client.get("/api/features", params={"layer": 0, "polarity": "negative"}).json()["items"]
    assert detail["larger_side"] == "negative" and set(detail["sides"]) == {"positive", "negative"}
    assert len(detail["records"]["bottom"]) == 20 and detail["sides"]["negative"]["score"] > 0.3
    assert listed[0]["polarity"] == "negative" and listed[0]["larger_side"] in ("positive", "negative")


def test_the_negative_side_needs_a_signed_collection(fake_openai, db_url, db):
    """A layer collected without --signed has no bottom records: explaining its negative side is refused before any
    work, saying how to collect them, and nothing is written."""
    store_signed(db, SamplerConfig())
    with db.session() as s:
        runs = s.scalar(select(func.count()).select_from(Run))
    for polarity in ("negative", "both"):
        result = cli("explain", "--model", MODEL, "--layer", str(LAYER), "--polarity", polarity, "--explainer",
                     "openai:fake", "--simulator", "embedding", "--db", db_url, ok=False)
        assert result.exit_code != 0 and "collect --model planted-signed --layers 0 --signed" in result.output
    result = cli("explain", "--model", MODEL, "--layer", str(LAYER), "--polarity", "both", "--explainer-sample",
                 "quantiles", "--explainer", "openai:fake", "--db", db_url, ok=False)
    assert result.exit_code != 0 and "--explainer-sample top or random" in result.output
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Explanation)) == 0
        assert s.scalar(select(func.count()).select_from(Run)) == runs
    assert fake_openai.requests == 0
