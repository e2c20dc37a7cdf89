"""`--calibrate` on explain and rescore: a line fitted on the valid split maps the test simulation, and the
calibrated r² / absolute deviation explained are stored beside the raw ones (checked against a fit by hand)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from autointerp.cli import main
from scorer.scored_set import scoring_input
from simulator.factory import make_simulator
from storage.core import repository as repo
from storage.core.db import Database
from storage.core.schema import Explanation, Score
from storage.records import record_store
from tests.pipeline_data import fill_layer
from tests.test_pipeline import digit_simulating_answer

BASE = ["--model", "tiny-model", "--layer", "6", "--simulator", "json:openai:fake", "--no-shuffled-baseline"]
CALIBRATED = ("rsquared_calibrated", "absolute_dev_explained_calibrated")


def _cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def _simulated(url: str, explanation: str, tokens: list[list[str]]) -> list[list[float]]:
    async def go():
        simulator = make_simulator("json:openai:fake", base_url=url)
        try:
            return [s.expected_activations for s in await simulator.simulate(explanation, tokens)]
        finally:
            await simulator.aclose()

    return asyncio.run(go())


def _scores(db: Database, feature_index: int) -> dict[tuple[str, str], Score]:
    with db.session() as s:
        feature = repo.find_feature(s, _fid(feature_index))
        rows = s.scalars(select(Score).where(Score.feature_id == feature.id, Score.role == "own")).all()
        return {(r.method, r.subset): r for r in rows}


def _fid(index: int):
    from activations.records import FeatureId
    return FeatureId("tiny-model", 6, "mlp_neuron", index)


def _hand_fit(db: Database, url: str, feature_index: int) -> tuple[float, float, float, float]:
    """slope, intercept (least squares on the valid split), then r² and absolute deviation explained of the
    calibrated test simulation over top-and-random records, as docs/architecture.md defines them."""
    with db.session() as s:
        row = repo.find_feature(s, _fid(feature_index))
        records = record_store.load_feature_records(s, row)
        text = s.scalar(select(Explanation.text).where(Explanation.feature_id == row.id))
    valid, test = scoring_input(records, "valid", "positive"), scoring_input(records, "test", "positive")
    x = np.concatenate([np.asarray(p) for p in _simulated(url, text, valid.tokens)])
    y = np.concatenate([np.asarray(r) for r in valid.real])
    slope, intercept = np.polyfit(x, y, 1)
    a = np.concatenate([np.asarray(r) for r in test.real])
    s_ = slope * np.concatenate([np.asarray(p) for p in _simulated(url, text, test.tokens)]) + intercept
    return slope, intercept, 1 - np.mean((a - s_) ** 2) / np.mean(a ** 2), 1 - np.mean(np.abs(a - s_)) / np.mean(np.abs(a))


def test_explain_calibrate_stores_the_hand_computed_fit(fake_openai, db_url, db):
    fill_layer(db, 2)
    fake_openai.answer = digit_simulating_answer
    # The planted simulation says 8 where the real value is ~7-10 after scaling: a fit moves it onto the scale.
    _cli("explain", *[a for a in BASE if a != "--no-shuffled-baseline"], "--explainer", "openai:fake", "--calibrate",
         "--db", db_url)
    slope, intercept, r2, ade = _hand_fit(db, fake_openai.url, 0)
    scores = _scores(db, 0)
    stored = scores[("rsquared_calibrated", "top_and_random")]
    assert stored.value == pytest.approx(r2, abs=1e-9)
    assert scores[("absolute_dev_explained_calibrated", "top_and_random")].value == pytest.approx(ade, abs=1e-9)
    fit = stored.details["calibration"]
    assert (fit["slope"], fit["intercept"]) == pytest.approx((slope, intercept)) and fit["fitted_on"] == "valid"
    assert stored.value != pytest.approx(scores[("rsquared", "top_and_random")].value)  # it did change r²
    # Random records never fire in this layer: r² is undefined there, and says why instead of storing 0.
    random_only = scores[("rsquared_calibrated", "random_only")]
    assert random_only.value is None and random_only.undefined_reason
    assert not any(m == "ev_correlation_calibrated" for m, _ in scores)  # correlation is not duplicated

    # The shuffled baseline is calibrated too (the borrowed explanation's own line), so calibrated methods have one.
    with db.session() as s:
        shuffled = s.scalars(select(Score).where(Score.role == "shuffled", Score.method == "rsquared_calibrated",
                                                 Score.subset == "top_and_random")).all()
    assert len(shuffled) == 2 and all(row.details["calibration"]["fitted_on"] == "valid" for row in shuffled)

    rows = json.loads(_cli("query", "--layer", "6", "--method", "rsquared_calibrated", "--format", "json",
                           "--no-records", "--db", db_url).output)
    assert rows[0]["score"] == pytest.approx(max(_scores(db, i)[("rsquared_calibrated", "top_and_random")].value
                                                 for i in (0, 1)))


def test_rescore_calibrate_adds_calibrated_scores_to_earlier_simulations(fake_openai, sqlite_url):
    db = Database(sqlite_url)
    fill_layer(db, 2)
    fake_openai.answer = digit_simulating_answer
    _cli("explain", *BASE, "--explainer", "openai:fake", "--db", sqlite_url)
    assert not any(m in CALIBRATED for m, _ in _scores(db, 1))
    raw_before = {k: v.value for k, v in _scores(db, 1).items()}
    out = _cli("rescore", *BASE, "--calibrate", "--db", sqlite_url).output
    assert "2 done" in out, out
    scores = _scores(db, 1)
    assert {k: v.value for k, v in scores.items() if k[0] not in CALIBRATED} == raw_before  # raw not redone
    _, _, r2, _ = _hand_fit(db, fake_openai.url, 1)
    assert scores[("rsquared_calibrated", "top_and_random")].value == pytest.approx(r2, abs=1e-9)
    again = _cli("rescore", *BASE, "--calibrate", "--db", sqlite_url).output
    assert "2 skipped" in again and len(_scores(db, 1)) == len(scores)  # nothing left to do
