"""Scores: real vs simulated activations -> numbers (pooled correlation, r², ...), and classification scorers."""

from scorer.classification import detection_scores, fuzzing_scores
from scorer.metrics import (
    ScoreValue,
    absolute_dev_explained,
    ev_correlation,
    per_record_correlations,
    rsquared,
    score_absolute_dev_explained,
    score_ev_correlation,
    score_mean_record_correlation,
    score_rsquared,
    score_spearman,
)
from scorer.subsets import METHODS, SUBSETS, ScoredRecord, bootstrap_ci, pick_shuffled, score_records

__all__ = [
    "METHODS", "SUBSETS", "ScoreValue", "ScoredRecord", "absolute_dev_explained", "bootstrap_ci", "detection_scores",
    "ev_correlation", "fuzzing_scores", "per_record_correlations", "pick_shuffled", "rsquared",
    "score_absolute_dev_explained", "score_ev_correlation", "score_mean_record_correlation", "score_records",
    "score_rsquared", "score_spearman",
]
