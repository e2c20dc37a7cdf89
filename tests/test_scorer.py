"""Scorer pinned to hand-computed values (see the arithmetic in each comment)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scorer
from scorer import ScoredRecord, ShuffledPicker, bootstrap_ci, score_records

# Record 1 is perfectly predicted (r=+1), record 2 perfectly anti-predicted (r=-1): mean per-record r = 0.
# Pooled: a=[0,1,10,11], s=[0,1,5,4]; deviations a: -5.5,-4.5,4.5,5.5; s: -2.5,-1.5,2.5,1.5
# cov = 13.75+6.75+11.25+8.25 = 40; Σda² = 101; Σds² = 17  ->  r = 40/sqrt(1717)
REAL = [[0.0, 1.0], [10.0, 11.0]]
PRED = [[0.0, 1.0], [5.0, 4.0]]


def test_pooled_correlation_differs_from_mean_of_records():
    assert scorer.ev_correlation(REAL, PRED) == pytest.approx(40 / math.sqrt(1717), abs=1e-12)
    assert scorer.per_record_correlations(REAL, PRED) == pytest.approx([1.0, -1.0])
    assert scorer.score_mean_record_correlation(REAL, PRED).value == pytest.approx(0.0)


def test_rsquared_and_absolute_dev_explained_formulas():
    # (a-s)² = 0,0,25,49 -> mean 18.5; a² mean = 222/4 = 55.5  ->  1 - 18.5/55.5 = 2/3
    assert scorer.rsquared(REAL, PRED) == pytest.approx(2 / 3, abs=1e-12)
    # |a-s| mean = 12/4 = 3; |a| mean = 22/4 = 5.5  ->  1 - 3/5.5 = 5/11
    assert scorer.absolute_dev_explained(REAL, PRED) == pytest.approx(5 / 11, abs=1e-12)


def test_spearman_is_rank_based():
    # ranks a: 1,2,3,4; ranks s: 1,2,4,3 -> rho = 1 - 6*2/(4*15) = 0.8
    assert scorer.score_spearman(REAL, PRED).value == pytest.approx(0.8)


def test_constant_inputs_are_undefined_with_a_reason_not_zero():
    zeros = [[0.0, 0.0], [0.0]]
    pred = [[1.0, 2.0], [3.0]]
    for fn in (scorer.score_ev_correlation, scorer.score_rsquared, scorer.score_absolute_dev_explained):
        result = fn(zeros, pred)
        assert result.value is None and ("zero" in result.undefined_reason or "constant" in result.undefined_reason)
    assert scorer.ev_correlation(zeros, pred) is None
    flat_pred = scorer.score_ev_correlation([[1.0, 2.0]], [[3.0, 3.0]])
    assert flat_pred.value is None and "predicted activations are constant" in flat_pred.undefined_reason
    assert scorer.rsquared([[1.0, 2.0]], [[3.0, 3.0]]) == pytest.approx(1 - 2.5 / 2.5)
    assert scorer.per_record_correlations([[1.0, 1.0], [1.0, 2.0]], [[0.0, 1.0], [0.0, 1.0]]) == [None, pytest.approx(1.0)]


def test_mismatched_shapes_name_the_record():
    with pytest.raises(ValueError, match="record 1: 2 real activations but 1 predicted"):
        scorer.ev_correlation(REAL, [[0.0, 1.0], [5.0]])


def test_subsets_are_scored_separately_and_ci_contains_the_estimate():
    records = [ScoredRecord("top", [9.0, 0.0, 7.0], [8.0, 1.0, 6.0]), ScoredRecord("top", [5.0, 1.0, 0.0], [4.0, 0.0, 1.0]),
               ScoredRecord("random", [0.0, 1.0, 0.0], [0.0, 2.0, 1.0]), ScoredRecord("random", [2.0, 0.0, 0.0], [1.0, 0.0, 1.0]),
               ScoredRecord("quantile:2", [3.0, 3.0, 3.0], [0.0, 0.0, 0.0])]
    scores = {(s.subset, s.method): s for s in score_records(records, n_resamples=200)}
    top_and_random = scores[("top_and_random", "ev_correlation")]
    assert top_and_random.n_records == 4 and top_and_random.n_tokens == 12
    assert top_and_random.value == pytest.approx(scorer.ev_correlation([r.real for r in records[:4]], [r.predicted for r in records[:4]]))
    random_only = scores[("random_only", "ev_correlation")]
    assert random_only.n_records == 2
    assert random_only.value == pytest.approx(scorer.ev_correlation([r.real for r in records[2:4]], [r.predicted for r in records[2:4]]))
    assert top_and_random.ci_low <= top_and_random.value <= top_and_random.ci_high
    # Seeded: the same call gives the same interval.
    assert bootstrap_ci([r.real for r in records[:4]], [r.predicted for r in records[:4]], seed=3) == \
        bootstrap_ci([r.real for r in records[:4]], [r.predicted for r in records[:4]], seed=3)


def test_missing_subset_is_undefined_and_a_shuffled_score_has_role_shuffled():
    records = [ScoredRecord("top", [1.0, 0.0], [1.0, 0.0]), ScoredRecord("top", [0.0, 2.0], [0.0, 1.0])]
    scores = score_records(records, methods=["ev_correlation"], n_resamples=50)
    random_only = next(s for s in scores if s.subset == "random_only")
    assert random_only.value is None and "random" in random_only.undefined_reason
    swapped = [ScoredRecord(r.sample, r.real, p) for r, p in zip(records, [[0.0, 1.0], [1.0, 0.0]])]
    shuffled = score_records(swapped, role="shuffled", methods=["ev_correlation"], n_resamples=50)
    assert {s.role for s in shuffled} == {"shuffled"}
    # a=[1,0,0,2], s=[0,1,1,0]: cov = -1.5, Σda² = 2.75, Σds² = 1  ->  r = -1.5/sqrt(2.75)
    assert next(s for s in shuffled if s.subset == "top_and_random").value == pytest.approx(-1.5 / 2.75 ** 0.5)


def test_pick_shuffled_is_reproducible_and_never_picks_itself():
    explanations = {1: "digits", 2: "colours", 3: "the word after of"}
    picks = [ShuffledPicker(explanations, seed=7).pick(1) for _ in range(3)]
    assert picks[0] == picks[1] == picks[2] and picks[0][0] != 1
    assert ShuffledPicker({1: "only me"}).pick(1) is None
    assert ShuffledPicker[int]({}).pick(1) is None


def test_one_picker_picks_what_a_fresh_ordering_of_the_others_picks():
    """The picker orders the set once; each pick equals choosing among the others ordered afresh, as before."""
    import zlib

    explanations = {k: f"text {k}" for k in [5, 12, 3, 40, 7, 100, 1]}
    picker = ShuffledPicker(explanations, seed=3)
    for own in [*explanations, 999]:  # 999: a feature without an explanation of its own
        others = sorted((k for k in explanations if k != own), key=repr)
        at = int(np.random.default_rng([3, zlib.crc32(repr(own).encode())]).integers(len(others)))
        assert picker.pick(own) == (others[at], explanations[others[at]])
