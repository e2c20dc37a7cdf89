"""The real side of simulation scoring: the recorded activations, signed by the polarity explained and never
clipped at zero (OpenAI's definition), checked against scipy on a GELU-like toy neuron whose quiet tokens are
slightly negative, where clipping flips the sign of the random-only correlation."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from activations.records import ActivationRecord, FeatureId, FeatureRecords
from activations.vocab import ClassificationSubset, ScoreMethod, ScoringSubset
from scorer.evaluate import score
from scorer.example_sets import example_input
from scorer.examples import FIRING_LEVEL
from scorer.scored_set import scoring_input
from simulator.base import SequenceSimulation


def gelu(x: float) -> float:
    return x * 0.5 * (1 + math.erf(x / math.sqrt(2)))


# Pre-activations: deep quiet (-3: GELU about -0.004), the GELU dip (-0.75: about -0.17), one weak firing token.
RANDOM_PRE = [[-3.0, -0.75, -3.0, -0.75, -3.0, 0.5, -3.0, -0.75], [-0.75, -3.0, -3.0, -0.75, -3.0, -3.0, -0.75, -3.0]]
RANDOM_SIM = [[2.0, 0, 2, 0, 2, 1, 2, 0], [0.0, 2, 2, 0, 2, 2, 0, 2]]
TOP_PRE, TOP_SIM = [-3.0, 2.5, 1.0, -0.75], [0.0, 9, 5, 0]


def toy_neuron() -> FeatureRecords:
    def record(pre: list[float], sample: str) -> ActivationRecord:
        return ActivationRecord([f" t{i}" for i in range(len(pre))], [gelu(x) for x in pre], sample=sample,
                                data_split="test")

    records = [record(TOP_PRE, "top")] + [record(pre, "random") for pre in RANDOM_PRE]
    return FeatureRecords(FeatureId("toy", 0, "mlp_neuron", 0), records)


def scored(polarity: str) -> dict[str, float | None]:
    data = scoring_input(toy_neuron(), "test", polarity)  # negative: the random records (the toy has no bottom ones)
    sims_of = {"top": [TOP_SIM], "random": list(RANDOM_SIM)}
    sims = [SequenceSimulation(list(r.tokens), sims_of[r.sample].pop(0)) for r in data.records]
    return {s.subset: s.value for s in score(data, sims) if s.method == ScoreMethod.EV_CORRELATION}


def flat(rows: list[list[float]]) -> list[float]:
    return [v for row in rows for v in row]


def test_random_only_correlation_is_pearson_of_the_raw_signed_activations():
    raw = flat([[gelu(x) for x in pre] for pre in RANDOM_PRE])
    expected = stats.pearsonr(raw, flat(RANDOM_SIM))[0]
    clipped = stats.pearsonr([max(a, 0.0) for a in raw], flat(RANDOM_SIM))[0]
    got = scored("positive")[ScoringSubset.RANDOM_ONLY]
    assert got == pytest.approx(expected, abs=1e-12)
    assert expected > 0 > clipped  # clipping at zero would have flipped its sign


def test_top_and_random_correlation_pools_the_raw_activations():
    raw = flat([[gelu(x) for x in pre] for pre in [TOP_PRE, *RANDOM_PRE]])
    expected = stats.pearsonr(raw, flat([TOP_SIM, *RANDOM_SIM]))[0]
    assert scored("positive")[ScoringSubset.TOP_AND_RANDOM] == pytest.approx(expected, abs=1e-12)


def test_negative_polarity_scores_the_negated_activations_unclipped():
    raw = flat([[-gelu(x) for x in pre] for pre in RANDOM_PRE])
    expected = stats.pearsonr(raw, flat(RANDOM_SIM))[0]
    assert scored("negative")[ScoringSubset.RANDOM_ONLY] == pytest.approx(expected, abs=1e-12)


def test_real_side_is_on_the_0_to_10_scale_of_the_polarity_maximum():
    data = scoring_input(toy_neuron(), "test", "positive")
    peak = gelu(2.5)
    assert data.real[0] == pytest.approx([10 * gelu(x) / peak for x in TOP_PRE])
    assert min(flat(data.real)) < 0  # the quiet tokens stay below zero


def test_example_scorers_still_threshold_the_clipped_scale():
    examples = example_input(toy_neuron(), "positive", None)
    assert examples.activating and min(v for e in examples.activating for v in e.values) >= 0.0
    quiet = examples.negatives[ClassificationSubset.RANDOM]
    assert quiet and all(max(e.values) < FIRING_LEVEL and min(e.values) >= 0.0 for e in quiet)
