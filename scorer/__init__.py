"""Scores: real vs simulated activations -> numbers (pooled correlation, r², ...), and the example scorers
(detection, fuzzing: an LLM judges examples; embedding: a sentence model ranks them; intruder: an LLM finds the
odd span out, no explanation; intervention: an LLM finds the continuation steering the feature changed)."""

from scorer.classification import classification_scores, detection_scores, fuzzing_scores
from scorer.examples import Example, ExampleSet
from scorer.intervention import intervention_scores
from scorer.methods import ALL_METHODS, SCORER_METHODS, parse_scorers, scorer_of, subsets_of
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
from scorer.stored_config import SCORING_VERSION, simulation_config, simulation_scorer_config
from scorer.subsets import (
    CALIBRATED_METHODS,
    METHODS,
    SUBSETS,
    ScoredRecord,
    ShuffledPicker,
    bootstrap_ci,
    calibration_failed,
    score_calibrated,
    score_records,
)

__all__ = [
    "ALL_METHODS", "CALIBRATED_METHODS", "METHODS", "SCORER_METHODS", "SCORING_VERSION", "SUBSETS", "Example",
    "ExampleSet",
    "ScoreValue", "ScoredRecord", "ShuffledPicker", "absolute_dev_explained", "bootstrap_ci", "calibration_failed",
    "classification_scores", "detection_scores", "ev_correlation", "fuzzing_scores", "intervention_scores",
    "parse_scorers",
    "per_record_correlations", "rsquared", "score_absolute_dev_explained", "score_calibrated",
    "score_ev_correlation", "score_mean_record_correlation", "score_records", "score_rsquared", "score_spearman",
    "scorer_of", "simulation_config", "simulation_scorer_config", "subsets_of",
]
