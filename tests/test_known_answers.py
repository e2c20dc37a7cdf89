"""Known answers: planted features whose truth is known (digits, capitalised words, and a signed GELU-like neuron
on month names) go through the real `autointerp import` of OpenAI NeuronRecord and explanation JSON, then
through `autointerp rescore` with every scorer, against a rule-following LLM on the fake OpenAI server (real
HTTP; tests.planted_rules). Each feature has its true explanation and a near miss; the pipeline stores the
shuffled-explanation baseline. The true explanation must beat both under every scorer and method, and the stored
correlation must be Pearson r of the stored, signed, unclipped activations against the stored simulation."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from sqlalchemy import select

from activations.vocab import ScoreRole
from autointerp.cli import main
from llm_client import local_models
from scorer import simulation_config
from scorer.judge import prompt as judge_prompt
from simulator.json_sim import json_prompt
from storage.core.db import Database
from storage.core.schema import Explanation, Feature, Score
from storage.reads.stored_simulations import stored_expected_values
from storage.records import record_store
from tests.fake_openai import FakeOpenAI
from tests.pipeline_data import uncached_spec
from tests.planted_records import PLANTED, write_planted
from tests.planted_rules import judge_answer, rule_following_answer, simulation_answer, value_digit

MODEL, LAYER = "planted-model", 0
# (method, subset) per scorer: each must rank the true explanation above its near miss and the baseline
METHODS = [("ev_correlation", "top_and_random"), ("detection_balanced_accuracy", "random"),
           ("detection_auroc", "random"), ("fuzzing_balanced_accuracy", "random"), ("fuzzing_auroc", "random"),
           ("embedding_auroc", "random")]


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Iterator[tuple[Database, str]]:
    """The planted features imported and rescored with every scorer, once for the module."""
    folder = tmp_path_factory.mktemp("known")
    write_planted(folder / "files", layer=LAYER)
    url = f"sqlite:///{folder / 'known.db'}"
    server = FakeOpenAI(answer=rule_following_answer, digit_for=value_digit).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_BASE_URL", server.url)
        patch.setenv("OPENAI_API_KEY", "sk-test-fake-key-123")
        patch.setenv("AUTOINTERP_CACHE", str(folder / "cache"))
        patch.setattr(local_models, "_cache_dir", local_models._cache_dir)  # the CLI sets it: restored after
        try:
            cli("import", str(folder / "files"), "--model", MODEL, "--db", url)
            simulator = f"json:{uncached_spec()}"
            cli("rescore", "--model", MODEL, "--layer", str(LAYER), "--simulator", simulator,
                "--scorer", "simulation,detection,fuzzing,embedding", "--scorer-llm", uncached_spec(), "--db", url)
        finally:
            server.stop()
    db = Database(url)
    yield db, simulator
    db.dispose()


def _values(db: Database, method: str, subset: str) -> dict[tuple[int, str, str], float | None]:
    """(feature index, explanation text, role) -> the stored value measured here by `method` on `subset`."""
    with db.session() as s:
        rows = s.execute(select(Feature.index, Explanation.text, Score.role, Score.value)
                         .join(Explanation, Explanation.id == Score.explanation_id)
                         .join(Feature, Feature.id == Score.feature_id)
                         .where(Score.method == method, Score.subset == subset, Score.simulator.not_like("import:%")))
        return {(index, text, role): value for index, text, role, value in rows}


@pytest.mark.slow
@pytest.mark.parametrize(("method", "subset"), METHODS)
def test_the_true_explanation_beats_its_near_miss_and_the_shuffled_baseline(scored, method, subset):
    values = _values(scored[0], method, subset)
    for feature in PLANTED:
        true = values[(feature.index, feature.explanation, ScoreRole.OWN)]
        near_miss = values[(feature.index, feature.near_miss, ScoreRole.OWN)]
        baseline = values[(feature.index, feature.explanation, ScoreRole.SHUFFLED)]
        assert true is not None, (feature.index, true, near_miss, baseline)
        # An undefined score (a simulation that predicts nothing on the scored records is constant) ranks below
        # every defined one, as in `query`: the true explanation beats it too.
        for name, other in (("near miss", near_miss), ("shuffled", baseline)):
            assert other is None or true > other, f"feature {feature.index} ({feature.rule.name}): {true} <= {name} {other}"


def _stored_sides(db: Database, simulator: str, feature_index: int, text: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw activations of the records the explanation's simulation scored, read back from the store (signed,
    unclipped), and the simulation's stored expected values: the top and random records, pooled."""
    with db.session() as s:
        feature = s.scalars(select(Feature).where(Feature.layer == LAYER, Feature.index == feature_index)).one()
        explanation_id = s.scalars(select(Explanation.id).where(Explanation.feature_id == feature.id,
                                                                 Explanation.text == text)).one()
        stored = stored_expected_values(s, explanation_id, feature.id, simulation_config(simulator))
        records = {r.record_id: r for r in record_store.load_feature_records(s, feature).records}
    assert stored, f"no stored simulation of {text!r}"
    pairs = [(records[record_id], expected) for record_id, expected in stored
             if records[record_id].sample in ("top", "random")]
    assert {r.sample for r, _ in pairs} == {"top", "random"} and {r.data_split for r, _ in pairs} == {"test"}
    return (np.concatenate([np.asarray(r.activations) for r, _ in pairs]),
            np.concatenate([np.asarray(expected) for _, expected in pairs]))


def _stored_correlation(db: Database, feature_index: int, text: str) -> float | None:
    return _values(db, "ev_correlation", "top_and_random")[(feature_index, text, ScoreRole.OWN)]


@pytest.mark.slow
@pytest.mark.parametrize("feature", PLANTED, ids=lambda f: f.rule.name)
def test_stored_correlation_is_pearson_of_the_stored_raw_activations(scored, feature):
    db, simulator = scored
    for text in (feature.explanation, feature.near_miss):
        real, expected = _stored_sides(db, simulator, feature.index, text)
        stored = _stored_correlation(db, feature.index, text)
        if np.ptp(expected) == 0:  # a constant simulation: r is undefined, stored as such (never as 0)
            assert stored is None, (text, stored)
        else:
            assert stored == pytest.approx(stats.pearsonr(real, expected)[0], abs=1e-9)


@pytest.mark.slow
def test_the_signed_feature_is_scored_unclipped(scored):
    db, simulator = scored
    gelu = next(f for f in PLANTED if f.signed)
    real, expected = _stored_sides(db, simulator, gelu.index, gelu.explanation)
    assert real.min() < -0.1 and real.max() > 1.5  # stored as planted: a dip below zero, a large positive peak
    unclipped = stats.pearsonr(real, expected)[0]
    clipped = stats.pearsonr(np.maximum(real, 0.0), expected)[0]
    stored = _stored_correlation(db, gelu.index, gelu.explanation)
    assert stored is not None and stored == pytest.approx(unclipped, abs=1e-9)
    assert abs(stored - clipped) > 1e-3, (stored, clipped)  # far beyond rounding: clipping would show


def test_the_fake_llm_follows_the_rule_its_explanation_names():
    tokens = ["In", " March", " 1999", ",", " the", " river"]
    reply = json.loads(simulation_answer(json_prompt("digits and numbers such as years", tokens)[0]["content"]))
    assert reply == [[t, 10 if t == " 1999" else 0] for t in tokens]
    examples = ["In March 1999, the river", "the river rose", "In<< March>> 1999", "In March<< 1999>>"]
    detection = judge_prompt("detection", "months of the year", examples)[0]["content"]
    assert judge_answer(detection) == "[1,0,1,1]"
    fuzzing = judge_prompt("fuzzing", "months of the year", examples)[0]["content"]
    assert judge_answer(fuzzing) == "[0,0,1,0]"


def test_the_fake_llm_answers_noise_to_an_explanation_naming_no_rule():
    tokens = [f" w{i}" for i in range(40)]
    values = [v for _, v in json.loads(simulation_answer(json_prompt("words about ships", tokens)[0]["content"]))]
    assert len(set(values)) > 3  # neither a rule's 0/10 nor a constant
    assert json.loads(simulation_answer(json_prompt("words about ships", tokens)[0]["content"]))[0][1] == values[0]
