"""Scores of a yes/no judgement over positive and negative items: balanced accuracy (from the answers) and
AUROC (from a score per item: the judge's P(yes), or a similarity), each with a stratified percentile
bootstrap interval that resamples items (positives and negatives apart, so every resample has both), or, where
items come in groups that were drawn together (grouped_auroc), whole groups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_RESAMPLES = 1000
CONFIDENCE = 0.95


def _resample_counts(n: int, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """How often each of n items is drawn in each resample: (n_resamples, n)."""
    draws = rng.integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1)
    return counts


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    if not (np.isfinite(low) and np.isfinite(high)):
        return None, None
    return float(low), float(high)


def accuracy(correct: Sequence[bool], *, seed: int = 0,
             n_resamples: int = N_RESAMPLES) -> tuple[float, float | None, float | None]:
    """(value, ci_low, ci_high): the fraction of right answers, the interval resampling the answers. Non-empty."""
    right = np.asarray(correct, dtype=np.float64)
    value = float(right.mean())
    if len(right) < 3:
        return value, None, None
    counts = _resample_counts(len(right), np.random.default_rng(seed), n_resamples)
    return (value, *_interval(counts @ right / len(right)))


def balanced_accuracy(positive_answers: Sequence[bool], negative_answers: Sequence[bool], *, seed: int = 0,
                      n_resamples: int = N_RESAMPLES) -> tuple[float, float | None, float | None]:
    """(value, ci_low, ci_high): the mean of the true positive and true negative rates. Both lists non-empty."""
    pos = np.asarray(positive_answers, dtype=np.float64)
    neg = 1.0 - np.asarray(negative_answers, dtype=np.float64)  # 1 where a negative was rightly rejected
    value = float((pos.mean() + neg.mean()) / 2)
    if len(pos) + len(neg) < 3:
        return value, None, None
    rng = np.random.default_rng(seed)
    cp, cn = _resample_counts(len(pos), rng, n_resamples), _resample_counts(len(neg), rng, n_resamples)
    return (value, *_interval((cp @ pos / len(pos) + cn @ neg / len(neg)) / 2))


def auroc(positive_scores: Sequence[float], negative_scores: Sequence[float], *, seed: int = 0,
          n_resamples: int = N_RESAMPLES) -> tuple[float, float | None, float | None]:
    """(value, ci_low, ci_high): P(a positive scores above a negative), ties counting half (Mann-Whitney U /
    n_pos n_neg). Both lists non-empty."""
    pos, neg = np.asarray(positive_scores, dtype=np.float64), np.asarray(negative_scores, dtype=np.float64)
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # (n_pos, n_neg)
    value = float(wins.mean())
    if len(pos) + len(neg) < 3:
        return value, None, None
    rng = np.random.default_rng(seed)
    cp, cn = _resample_counts(len(pos), rng, n_resamples), _resample_counts(len(neg), rng, n_resamples)
    # A resample's AUROC is the count-weighted mean of the pairwise wins.
    resampled = np.einsum("ri,ij,rj->r", cp, wins, cn) / (len(pos) * len(neg))
    return (value, *_interval(resampled))


def grouped_auroc(groups: Sequence[tuple[Sequence[float], Sequence[float]]], *, seed: int = 0,
                  n_resamples: int = N_RESAMPLES) -> tuple[float, float | None, float | None]:
    """(value, ci_low, ci_high): the AUROC of every group's positive and negative scores pooled, the interval
    resampling whole groups: the items of one group are not independent (the probabilities one judge answer gives
    its options sum to one), so a group is the unit that was drawn. Some group has a positive, some a negative."""
    pos = np.concatenate([np.asarray(p, dtype=np.float64) for p, _ in groups])
    neg = np.concatenate([np.asarray(n, dtype=np.float64) for _, n in groups])
    pos_group = np.concatenate([np.full(len(p), g) for g, (p, _) in enumerate(groups)]).astype(int)
    neg_group = np.concatenate([np.full(len(n), g) for g, (_, n) in enumerate(groups)]).astype(int)
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    value = float(wins.mean())
    if len(groups) < 3:
        return value, None, None
    between = np.zeros((len(groups), len(groups)))  # [g, h]: the wins of group g's positives over h's negatives
    np.add.at(between, (pos_group[:, None], neg_group[None, :]), wins)
    counts = _resample_counts(len(groups), np.random.default_rng(seed), n_resamples)
    pairs = (counts @ np.bincount(pos_group, minlength=len(groups))) * (
        counts @ np.bincount(neg_group, minlength=len(groups)))
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample with no positive or no negative: no AUROC
        resampled = np.einsum("rg,gh,rh->r", counts, between, counts) / pairs
    finite = resampled[np.isfinite(resampled)]
    return (value, *_interval(finite)) if finite.size else (value, None, None)
